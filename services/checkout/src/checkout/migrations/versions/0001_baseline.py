"""Baseline of the checkout schema: the schema itself and alembic's version table in it.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from collections.abc import Sequence

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Nothing beyond the schema, which payrail.db.migrate creates before alembic runs."""


def downgrade() -> None:
    """Nothing to undo."""
