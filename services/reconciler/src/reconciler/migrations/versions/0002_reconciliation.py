"""The reconciler's tables: its payment projection, statements, report lines, runs,
waterfalls and discrepancies, and the messaging outbox and inbox.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from collections.abc import Sequence

from alembic import op

from payrail.db import migrating_schema
from payrail.messaging.schema import create_messaging_tables, drop_messaging_tables
from reconciler.tables import create_reconciler_tables, drop_reconciler_tables

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: the tables this revision introduces (later revisions add theirs)
TABLES = (
    "payments",
    "refunds",
    "disputes",
    "statements",
    "bank_lines",
    "report_lines",
    "runs",
    "waterfall_steps",
    "discrepancies",
    "discrepancy_events",
)


def upgrade() -> None:
    create_messaging_tables(op, migrating_schema())
    create_reconciler_tables(op, migrating_schema(), TABLES)


def downgrade() -> None:
    drop_reconciler_tables(op, migrating_schema(), TABLES)
    drop_messaging_tables(op, migrating_schema())
