"""The entitlements tables: per-payment access records, grants (one per payment at most), and the
messaging outbox and inbox.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from collections.abc import Sequence

from alembic import op

from entitlements.tables import create_entitlements_tables, drop_entitlements_tables
from payrail.db import migrating_schema
from payrail.messaging.schema import create_messaging_tables, drop_messaging_tables

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    create_messaging_tables(op, migrating_schema())
    create_entitlements_tables(op, migrating_schema())


def downgrade() -> None:
    drop_entitlements_tables(op, migrating_schema())
    drop_messaging_tables(op, migrating_schema())
