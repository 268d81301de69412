"""checkout's tables: payments, gateway calls, refunds, idempotency keys, the payment timeline,
unmatched gateway events, and the messaging outbox and inbox.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from collections.abc import Sequence

from alembic import op

from checkout.adapters.tables import create_checkout_tables, drop_checkout_tables
from payrail.db import migrating_schema
from payrail.messaging.schema import create_messaging_tables, drop_messaging_tables

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    create_messaging_tables(op, migrating_schema())
    create_checkout_tables(op, migrating_schema())


def downgrade() -> None:
    drop_checkout_tables(op, migrating_schema())
    drop_messaging_tables(op, migrating_schema())
