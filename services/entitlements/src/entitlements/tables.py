"""The entitlements tables, in the service's own schema (no other service reads or writes them).

* ``payment_access`` - one row per payment ever seen on ``payments.lifecycle``: its access
  state (``pending`` | ``granted`` | ``revoked`` | ``denied``), the user and sku it is for, and
  why it last changed. The row is also the lock that serializes the events of one payment, and
  the memory that keeps a payment ``denied`` when a refund or failure came before its success.
* ``grants`` - what a user owns: at most one row per payment, enforced by ``UNIQUE(payment_id)``
  (not only by code), ``granted`` until revoked.
* plus the messaging ``outbox`` and ``inbox`` (:mod:`payrail.messaging.schema`).

Described once here as SQLAlchemy Core tables; the migration creates them through
:func:`create_entitlements_tables`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from alembic.operations import Operations
from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    MetaData,
    Table,
    Text,
    UniqueConstraint,
    text,
)

from payrail.messaging.schema import validate_schema

TS = DateTime(timezone=True)


def _payment_access() -> list[Any]:
    return [
        Column("payment_id", Text, primary_key=True),
        Column("user_id", Text, nullable=False),
        Column("sku", Text, nullable=False),
        Column("state", Text, nullable=False, server_default="pending"),
        #: the ce_type of the event that last changed the state
        Column("reason", Text),
        Column("first_seen_at", TS, nullable=False, server_default=text("clock_timestamp()")),
        Column("updated_at", TS, nullable=False, server_default=text("clock_timestamp()")),
        CheckConstraint(
            "state IN ('pending', 'granted', 'revoked', 'denied')", name="ck_access_state"
        ),
    ]


def _grants() -> list[Any]:
    return [
        Column("id", BigInteger, Identity(always=True), primary_key=True),
        Column(
            "payment_id",
            Text,
            ForeignKey("payment_access.payment_id"),
            nullable=False,
        ),
        Column("user_id", Text, nullable=False),
        Column("sku", Text, nullable=False),
        Column("status", Text, nullable=False),
        Column("granted_at", TS, nullable=False),
        Column("revoked_at", TS),
        Column("revoke_reason", Text),
        UniqueConstraint("payment_id", name="uq_grants_payment_id"),
        CheckConstraint("status IN ('granted', 'revoked')", name="ck_grants_status"),
        CheckConstraint(
            "(status = 'revoked') = (revoked_at IS NOT NULL)", name="ck_grants_revoked_at"
        ),
    ]


_COLUMNS: dict[str, Callable[[], list[Any]]] = {
    "payment_access": _payment_access,
    "grants": _grants,
}
#: (name, table, columns): the user's entitlements, oldest first
_INDEXES = (("ix_grants_user", "grants", ("user_id", "granted_at")),)


@dataclass(frozen=True, slots=True)
class EntitlementsTables:
    schema: str
    metadata: MetaData
    payment_access: Table
    grants: Table

    @property
    def access_channel(self) -> str:
        """The LISTEN/NOTIFY channel a payment's access changes are announced on (at commit)."""
        return f"payrail_access_{self.schema}"


@functools.cache
def entitlements_tables(schema: str) -> EntitlementsTables:
    metadata = MetaData(schema=validate_schema(schema))
    tables = {name: Table(name, metadata, *columns()) for name, columns in _COLUMNS.items()}
    for name, table, columns in _INDEXES:
        Index(name, *(tables[table].c[column] for column in columns))
    return EntitlementsTables(schema, metadata, **tables)


def create_entitlements_tables(op: Operations, schema: str) -> None:
    """Create every table and index of :func:`entitlements_tables` in ``schema`` (a migration)."""
    validate_schema(schema)
    for name, columns in _COLUMNS.items():
        op.create_table(name, *columns(), schema=schema)
    for name, table, index_columns in _INDEXES:
        op.create_index(name, table, list(index_columns), schema=schema)


def drop_entitlements_tables(op: Operations, schema: str) -> None:
    validate_schema(schema)
    for name in reversed(list(_COLUMNS)):
        op.drop_table(name, schema=schema)
