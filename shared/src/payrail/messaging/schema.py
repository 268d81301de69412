"""The ``outbox`` and ``inbox`` tables every service that produces or consumes events owns.

They live in the service's own schema (no cross-service SQL), are described once here as
SQLAlchemy Core tables, and are created by the service's alembic migration::

    from payrail.messaging.schema import create_messaging_tables, drop_messaging_tables

    def upgrade() -> None:
        create_messaging_tables(op, "checkout")

    def downgrade() -> None:
        drop_messaging_tables(op, "checkout")

``outbox``: events staged by business transactions, published by the relay in ``id`` order per
key. ``published_at`` is set once Kafka acknowledged the record; published rows are purged after
a retention. The partial indexes keep the relay's queries proportional to the backlog, not to
the table.

``inbox``: one row per (consumer, ``ce_id``) a consumer has applied. Its primary key is what
makes a redelivered message a no-op.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from alembic.operations import Operations
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Identity,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Table,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

_SCHEMA = re.compile(r"^[a-z_][a-z0-9_]{0,47}$")


def _outbox_columns() -> list[Column[Any]]:
    return [
        Column("id", BigInteger, Identity(always=True), primary_key=True),
        Column("topic", Text, nullable=False),
        Column("key", Text, nullable=False),
        Column("ce_id", Text, nullable=False),
        Column("ce_type", Text, nullable=False),
        Column("payload", LargeBinary, nullable=False),
        Column("headers", JSONB, nullable=False),
        Column(
            "created_at",
            DateTime(timezone=True),
            nullable=False,
            server_default=text("clock_timestamp()"),
        ),
        Column("published_at", DateTime(timezone=True), nullable=True),
    ]


def _inbox_columns() -> list[Column[Any]]:
    return [
        Column("consumer", Text, primary_key=True),
        Column("ce_id", Text, primary_key=True),
        Column("ce_type", Text, nullable=False),
        Column("topic", Text, nullable=False),
        Column("partition", Integer, nullable=False),
        Column("offset", BigInteger, nullable=False),
        Column(
            "processed_at",
            DateTime(timezone=True),
            nullable=False,
            server_default=text("clock_timestamp()"),
        ),
    ]


@dataclass(frozen=True, slots=True)
class _IndexSpec:
    name: str
    table: str
    columns: tuple[str, ...]
    where: str | None


_INDEXES = (
    # the relay's claim: unpublished rows in id order
    _IndexSpec("ix_outbox_unpublished", "outbox", ("id",), "published_at IS NULL"),
    # the per-key ordering check: "is an older row of this key still unpublished?"
    _IndexSpec("ix_outbox_unpublished_key", "outbox", ("key", "id"), "published_at IS NULL"),
    # purge of published rows past the retention
    _IndexSpec("ix_outbox_published_at", "outbox", ("published_at",), "published_at IS NOT NULL"),
    # prune of inbox rows past the retention
    _IndexSpec("ix_inbox_processed_at", "inbox", ("processed_at",), None),
)

_COLUMNS: dict[str, Callable[[], list[Column[Any]]]] = {
    "outbox": _outbox_columns,
    "inbox": _inbox_columns,
}


@dataclass(frozen=True, slots=True)
class MessagingTables:
    """The outbox and inbox tables of one schema, and its NOTIFY channel."""

    schema: str
    metadata: MetaData
    outbox: Table
    inbox: Table

    @property
    def channel(self) -> str:
        """The LISTEN/NOTIFY channel the relay of this schema listens on."""
        return f"payrail_outbox_{self.schema}"


def validate_schema(schema: str) -> str:
    """Schema names are embedded in SQL and channel names: keep them to plain identifiers."""
    if not _SCHEMA.match(schema):
        raise ValueError(f"schema {schema!r} must match {_SCHEMA.pattern}")
    return schema


@functools.cache
def messaging_tables(schema: str) -> MessagingTables:
    """The tables of ``schema`` (cached: one MetaData per schema)."""
    metadata = MetaData(schema=validate_schema(schema))
    tables = {name: Table(name, metadata, *columns()) for name, columns in _COLUMNS.items()}
    for spec in _INDEXES:
        table = tables[spec.table]
        Index(
            spec.name,
            *(table.c[column] for column in spec.columns),
            postgresql_where=text(spec.where) if spec.where else None,
        )
    return MessagingTables(schema, metadata, tables["outbox"], tables["inbox"])


def create_messaging_tables(op: Operations, schema: str) -> None:
    """Create ``outbox`` and ``inbox`` (and their indexes) in ``schema``, from a migration."""
    validate_schema(schema)
    for name, columns in _COLUMNS.items():
        op.create_table(name, *columns(), schema=schema)
    for spec in _INDEXES:
        op.create_index(
            spec.name,
            spec.table,
            list(spec.columns),
            schema=schema,
            postgresql_where=text(spec.where) if spec.where else None,
        )


def drop_messaging_tables(op: Operations, schema: str) -> None:
    """Drop what :func:`create_messaging_tables` created."""
    validate_schema(schema)
    for name in _COLUMNS:
        op.drop_table(name, schema=schema)
