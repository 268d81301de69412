"""checkout's tables, in its own schema (no other service reads or writes them).

* ``payments`` - one row per payment, created ``initiated`` before any gateway call. The domain
  state is ``facts`` (JSONB, :class:`checkout.domain.payment.Facts`) from which ``status`` is
  derived; ``status`` is stored for queries. ``version`` grows on every update (see
  :mod:`checkout.adapters.repository` for the locking rules). ``next_sync_at`` /
  ``sync_attempts`` schedule the janitor's status syncs; ``needs_attention`` flags a payment
  for a human.
* ``gateway_calls`` - calls checkout owes a gateway (create, capture, refund). A call is written
  in the business transaction and executed after the commit, outside any transaction, with an
  idempotency key derived from payrail's payment (or refund) id; a crashed executor leaves it
  due and it is made again with the same key. It is an outbox whose relay talks to a gateway.
* ``refunds`` - refunds requested through payrail.
* ``idempotency_keys`` - the first response of every ``Idempotency-Key`` per endpoint
  (:mod:`payrail.web.idempotency` defines the table).
* ``payment_events`` - the payment's timeline: API actions, gateway events applied, gateway
  calls, status changes, each with its source and ``ce_id``.
* ``unmatched_gateway_events`` - verified gateway events naming a payment checkout does not
  know; kept for a human (and counted), never dropped.
* plus the messaging ``outbox`` and ``inbox`` (:mod:`payrail.messaging.schema`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from alembic.operations import Operations
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from payrail.messaging.schema import validate_schema
from payrail.web.idempotency import idempotency_keys_columns

TS = DateTime(timezone=True)


def _now() -> Any:
    return func.now()


def _payments() -> list[Any]:
    return [
        Column("id", Text, primary_key=True),
        Column("user_id", Text, nullable=False),
        Column("sku", Text, nullable=False),
        Column("amount", BigInteger, nullable=False),
        Column("currency", Text, nullable=False),
        Column("gateway", Text, nullable=False),
        Column("account", Text, nullable=False),
        Column("gateway_payment_id", Text),
        Column("status", Text, nullable=False),
        Column("facts", JSONB, nullable=False),
        Column("pending_refunds", BigInteger, nullable=False, server_default="0"),
        Column("description", Text),
        Column("metadata", JSONB, nullable=False, server_default="{}"),
        #: what the front end needs to pay: Stripe's client secret, a redirect gateway's page
        Column("client_secret", Text),
        Column("redirect_url", Text),
        Column("failure_code", Text),
        Column("failure_message", Text),
        Column("needs_attention", Boolean, nullable=False, server_default="false"),
        Column("attention_reason", Text),
        #: janitor: how many syncs were made, and when the next one is due (NULL: none)
        Column("sync_attempts", Integer, nullable=False, server_default="0"),
        Column("next_sync_at", TS),
        Column("created_at", TS, nullable=False, server_default=_now()),
        Column("updated_at", TS, nullable=False, server_default=_now()),
        Column("version", Integer, nullable=False, server_default="1"),
    ]


def _gateway_calls() -> list[Any]:
    return [
        Column("id", BigInteger, Identity(always=True), primary_key=True),
        Column("payment_id", Text, ForeignKey("payments.id"), nullable=False),
        Column("refund_id", Text),
        Column("kind", Text, nullable=False),  # create | capture | refund
        Column("idempotency_key", Text, nullable=False, unique=True),
        Column("status", Text, nullable=False),  # due | done | declined | unknown
        #: when an executor may (re)take the call; a claimed call's due_at is its lease end
        Column("due_at", TS, nullable=False, server_default=_now()),
        Column("attempts", Integer, nullable=False, server_default="0"),
        Column("last_error", Text),
        Column("created_at", TS, nullable=False, server_default=_now()),
        Column("updated_at", TS, nullable=False, server_default=_now()),
    ]


def _refunds() -> list[Any]:
    return [
        Column("id", Text, primary_key=True),
        Column("payment_id", Text, ForeignKey("payments.id"), nullable=False),
        Column("amount", BigInteger, nullable=False),
        Column("currency", Text, nullable=False),
        Column("reason", Text),
        # requested | pending | succeeded | failed | unknown
        Column("status", Text, nullable=False),
        Column("gateway_refund_id", Text),
        Column("failure_message", Text),
        Column("created_at", TS, nullable=False, server_default=_now()),
        Column("updated_at", TS, nullable=False, server_default=_now()),
    ]


def _payment_events() -> list[Any]:
    return [
        Column("id", BigInteger, Identity(always=True), primary_key=True),
        Column("payment_id", Text, ForeignKey("payments.id"), nullable=False),
        Column("at", TS, nullable=False, server_default=text("clock_timestamp()")),
        Column("kind", Text, nullable=False),
        Column("source", Text, nullable=False),
        Column("ce_id", Text),
        Column("status_before", Text),
        Column("status_after", Text),
        Column("detail", JSONB, nullable=False, server_default="{}"),
    ]


def _unmatched_gateway_events() -> list[Any]:
    return [
        Column("ce_id", Text, primary_key=True),
        Column("gateway", Text, nullable=False),
        Column("kind", Text, nullable=False),
        Column("payment_id", Text),
        Column("gateway_payment_id", Text),
        Column("source", Text, nullable=False),
        Column("event", JSONB, nullable=False),
        Column("received_at", TS, nullable=False, server_default=_now()),
        Column("resolved_at", TS),
    ]


_COLUMNS: dict[str, Callable[[], list[Any]]] = {
    "payments": _payments,
    "gateway_calls": _gateway_calls,
    "refunds": _refunds,
    "idempotency_keys": idempotency_keys_columns,
    "payment_events": _payment_events,
    "unmatched_gateway_events": _unmatched_gateway_events,
}


@dataclass(frozen=True, slots=True)
class _IndexSpec:
    name: str
    table: str
    columns: tuple[str, ...]
    where: str | None = None


_INDEXES = (
    _IndexSpec("ix_payments_user", "payments", ("user_id", "created_at")),
    _IndexSpec("ix_payments_gateway_id", "payments", ("gateway", "gateway_payment_id")),
    # the janitor's claim: due syncs in time order, proportional to what is due
    _IndexSpec("ix_payments_next_sync", "payments", ("next_sync_at",), "next_sync_at IS NOT NULL"),
    _IndexSpec("ix_gateway_calls_due", "gateway_calls", ("due_at",), "status = 'due'"),
    _IndexSpec("ix_gateway_calls_payment", "gateway_calls", ("payment_id",)),
    _IndexSpec("ix_refunds_payment", "refunds", ("payment_id",)),
    _IndexSpec("ix_refunds_gateway_id", "refunds", ("gateway_refund_id",)),
    _IndexSpec("ix_payment_events_payment", "payment_events", ("payment_id", "id")),
    _IndexSpec(
        "ix_unmatched_open", "unmatched_gateway_events", ("received_at",), "resolved_at IS NULL"
    ),
)


@dataclass(frozen=True)
class CheckoutTables:
    schema: str
    metadata: MetaData
    payments: Table
    gateway_calls: Table
    refunds: Table
    idempotency_keys: Table
    payment_events: Table
    unmatched_gateway_events: Table


@functools.cache
def checkout_tables(schema: str) -> CheckoutTables:
    """The tables of ``schema`` (cached: one MetaData per schema)."""
    metadata = MetaData(schema=validate_schema(schema))
    tables = {name: Table(name, metadata, *columns()) for name, columns in _COLUMNS.items()}
    for spec in _INDEXES:
        Index(
            spec.name,
            *(tables[spec.table].c[column] for column in spec.columns),
            postgresql_where=text(spec.where) if spec.where else None,
        )
    return CheckoutTables(schema, metadata, **tables)


def create_checkout_tables(op: Operations, schema: str) -> None:
    """Create every table and index of :func:`checkout_tables` in ``schema`` (a migration)."""
    checkout_tables(schema).metadata.create_all(op.get_bind())


def drop_checkout_tables(op: Operations, schema: str) -> None:
    checkout_tables(schema).metadata.drop_all(op.get_bind())
