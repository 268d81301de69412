"""checkout's tables: payments, gateway calls, refunds, idempotency keys, the payment timeline,
unmatched gateway events, and the messaging outbox and inbox.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from collections.abc import Sequence

from alembic import context, op

from checkout.adapters.tables import create_checkout_tables, drop_checkout_tables
from payrail.messaging.schema import create_messaging_tables, drop_messaging_tables

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _schema() -> str:
    """The schema being migrated (payrail.db.migrate passes it; tests migrate scratch schemas)."""
    schema: str = context.config.attributes["schema"]
    return schema


def upgrade() -> None:
    create_messaging_tables(op, _schema())
    create_checkout_tables(op, _schema())


def downgrade() -> None:
    drop_checkout_tables(op, _schema())
    drop_messaging_tables(op, _schema())
