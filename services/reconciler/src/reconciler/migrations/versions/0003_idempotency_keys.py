"""HTTP idempotency of every POST: the ``idempotency_keys`` table replaces the key and request
hash the ``runs`` table kept for ``POST /v1/reconciliations`` alone.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from payrail.db import migrating_schema
from reconciler.tables import create_reconciler_tables, drop_reconciler_tables

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("idempotency_keys",)


def upgrade() -> None:
    create_reconciler_tables(op, migrating_schema(), TABLES)
    # IF EXISTS: a database created at this revision never had them (0002 builds ``runs`` from
    # the current table definition); dropping a column drops its unique constraint and index
    for column in ("idempotency_key", "request_hash"):
        op.execute(
            sa.text(f'ALTER TABLE "{migrating_schema()}".runs DROP COLUMN IF EXISTS {column}')
        )


def downgrade() -> None:
    drop_reconciler_tables(op, migrating_schema(), TABLES)
    op.add_column(
        "runs", sa.Column("idempotency_key", sa.Text, unique=True), schema=migrating_schema()
    )
    op.add_column("runs", sa.Column("request_hash", sa.Text), schema=migrating_schema())
