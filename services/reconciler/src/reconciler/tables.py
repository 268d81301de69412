"""The reconciler's tables, in its own schema (no other service reads or writes them).

* ``payments``, ``refunds``, ``disputes`` - payrail's records as the reconciler knows them, a
  projection of ``payments.lifecycle`` (never a read of checkout's tables);
* ``statements`` and ``bank_lines`` - imported bank statements (a file imports whole or not at
  all; the same file or the same bank statement id is recognised and not imported twice);
* ``report_lines`` - gateway report lines, upserted by (gateway, line id);
* ``runs``, ``waterfall_steps``, ``discrepancies`` - each reconciliation run, its waterfall and
  every reconciling row with the references behind it;
* ``discrepancy_events`` - the ``ce_id`` of every discrepancy event already staged, so a
  re-run does not announce the same discrepancy twice;
* ``idempotency_keys`` - the first response to each ``Idempotency-Key`` of a POST, replayed to
  a repeat of the same request (:mod:`payrail.web.idempotency` defines the table);
* plus the messaging ``outbox`` and ``inbox`` (:mod:`payrail.messaging.schema`).

Described once here as SQLAlchemy Core tables; migrations create them through
:func:`create_reconciler_tables`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl
from alembic.operations import Operations
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

from payrail.messaging.schema import validate_schema
from payrail.web.idempotency import idempotency_keys_columns
from reconciler.frames import (
    BANK_LINES,
    GATEWAY_LINES,
    LEDGER_DISPUTES,
    LEDGER_REFUNDS,
    STR_LIST,
    UTC_TS,
    Schema,
)

TS = DateTime(timezone=True)


def _now() -> Any:
    return func.now()


def _sql_type(dtype: pl.DataType) -> Any:
    if dtype == UTC_TS:
        return TS
    if dtype == STR_LIST:
        return ARRAY(Text)
    return {pl.String(): Text, pl.Int64(): BigInteger, pl.Boolean(): Boolean, pl.Date(): Date}[
        dtype
    ]


def columns_of(
    schema: Schema,
    *,
    primary_key: Sequence[str] = (),
    server_defaults: Mapping[str, str] | None = None,
) -> list[Column[Any]]:
    """The columns of a table that stores an engine dataset (:mod:`reconciler.frames`): one per
    column of ``schema``, in its order and type, NOT NULL where the schema requires a value or
    fills one in - so what the engine reads back from the table conforms as it was written."""
    defaults = server_defaults or {}
    return [
        Column(
            name,
            _sql_type(dtype),
            primary_key=name in primary_key,
            nullable=name not in schema.required and schema.defaults.get(name) is None,
            server_default=defaults.get(name),
        )
        for name, dtype in schema.columns.items()
    ]


def _payments() -> list[Any]:
    return [
        Column("payment_id", Text, primary_key=True),
        Column("gateway", Text, nullable=False),
        Column("gateway_payment_id", Text),
        Column("status", Text, nullable=False),
        Column("amount", BigInteger, nullable=False),
        Column("currency", Text, nullable=False),
        Column("amount_refunded", BigInteger, nullable=False, server_default="0"),
        Column("user_id", Text),
        Column("sku", Text),
        Column("captured_at", TS),
        Column("last_event_at", TS, nullable=False),
        Column("updated_at", TS, nullable=False, server_default=_now()),
    ]


def _refunds() -> list[Any]:
    return columns_of(LEDGER_REFUNDS, primary_key=("refund_id",))


def _disputes() -> list[Any]:
    return columns_of(LEDGER_DISPUTES, primary_key=("dispute_id",))


def _statements() -> list[Any]:
    return [
        Column("id", BigInteger, Identity(), primary_key=True),
        Column("account", Text),
        Column("statement_id", Text, nullable=False),
        Column("format", Text, nullable=False),
        Column("source", Text, nullable=False),
        Column("currency", Text),
        Column("period_start", Date),
        Column("period_end", Date),
        Column("opening_balance", BigInteger),
        Column("closing_balance", BigInteger),
        Column("content_hash", Text, nullable=False),
        Column("line_count", Integer, nullable=False),
        Column("imported_at", TS, nullable=False, server_default=_now()),
        UniqueConstraint("account", "statement_id", postgresql_nulls_not_distinct=True),
    ]


def _bank_lines() -> list[Any]:
    return [
        Column(
            "statement_pk",
            BigInteger,
            ForeignKey("statements.id", ondelete="CASCADE"),
            nullable=False,
        ),
        *columns_of(BANK_LINES, server_defaults={"references": "{}"}),
        PrimaryKeyConstraint("statement_pk", "line_id"),
    ]


def _report_lines() -> list[Any]:
    return [
        *columns_of(GATEWAY_LINES),
        Column("imported_at", TS, nullable=False, server_default=_now()),
        PrimaryKeyConstraint("gateway", "line_id"),
    ]


def _runs() -> list[Any]:
    return [
        Column("id", Text, primary_key=True),
        Column("params", JSONB, nullable=False),
        Column("period_start", Date, nullable=False),
        Column("period_end", Date, nullable=False),
        Column("currency", Text, nullable=False),
        Column("status", Text, nullable=False),  # running | succeeded | failed
        Column("stage", Text, nullable=False),
        Column("progress", Integer, nullable=False, server_default="0"),
        Column("error", Text),
        Column("digest", Text),
        Column("summary", JSONB),
        Column("warnings", JSONB),
        Column("created_at", TS, nullable=False, server_default=_now()),
        Column("finished_at", TS),
    ]


def _waterfall_steps() -> list[Any]:
    return [
        Column("run_id", Text, ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
        Column("position", Integer, nullable=False),
        Column("cause", Text, nullable=False),
        Column("kind", Text, nullable=False),
        Column("label", Text, nullable=False),
        Column("amount", BigInteger, nullable=False),
        Column("rows", Integer, nullable=False),
        PrimaryKeyConstraint("run_id", "position"),
    ]


def _discrepancies() -> list[Any]:
    return [
        Column("run_id", Text, ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
        Column("position", Integer, nullable=False),
        Column("cause", Text, nullable=False),
        Column("kind", Text, nullable=False),
        Column("stage", Text, nullable=False),
        Column("amount", BigInteger, nullable=False),
        Column("ref", Text),
        Column("gateway", Text),
        Column("payment_id", Text),
        Column("ledger_refs", JSONB, nullable=False),
        Column("gateway_line_ids", JSONB, nullable=False),
        Column("payout_ids", JSONB, nullable=False),
        Column("bank_line_ids", JSONB, nullable=False),
        Column("line_count", BigInteger, nullable=False),
        Column("expected_by", Date),
        Column("detail", Text),
        Column("ce_id", Text),
        PrimaryKeyConstraint("run_id", "position"),
    ]


def _discrepancy_events() -> list[Any]:
    return [
        Column("ce_id", Text, primary_key=True),
        Column("run_id", Text, nullable=False),
        Column("staged_at", TS, nullable=False, server_default=_now()),
    ]


_COLUMNS: dict[str, Callable[[], list[Any]]] = {
    "payments": _payments,
    "refunds": _refunds,
    "disputes": _disputes,
    "statements": _statements,
    "bank_lines": _bank_lines,
    "report_lines": _report_lines,
    "runs": _runs,
    "waterfall_steps": _waterfall_steps,
    "discrepancies": _discrepancies,
    "discrepancy_events": _discrepancy_events,
    "idempotency_keys": idempotency_keys_columns,
}
#: (name, table, columns): what the run-time queries filter on
_INDEXES = (
    ("ix_payments_gateway_id", "payments", ("gateway", "gateway_payment_id")),
    ("ix_payments_last_event_at", "payments", ("last_event_at",)),
    ("ix_refunds_occurred_at", "refunds", ("occurred_at",)),
    ("ix_disputes_opened_at", "disputes", ("opened_at",)),
    ("ix_bank_lines_booking_date", "bank_lines", ("booking_date",)),
    ("ix_report_lines_created_at", "report_lines", ("created_at",)),
    ("ix_discrepancies_cause", "discrepancies", ("run_id", "cause")),
)


@dataclass(frozen=True)
class ReconcilerTables:
    schema: str
    metadata: MetaData
    payments: Table
    refunds: Table
    disputes: Table
    statements: Table
    bank_lines: Table
    report_lines: Table
    runs: Table
    waterfall_steps: Table
    discrepancies: Table
    discrepancy_events: Table
    idempotency_keys: Table


@functools.cache
def reconciler_tables(schema: str) -> ReconcilerTables:
    metadata = MetaData(schema=validate_schema(schema))
    tables = {name: Table(name, metadata, *columns()) for name, columns in _COLUMNS.items()}
    for name, table, columns in _INDEXES:
        Index(name, *(tables[table].c[column] for column in columns))
    return ReconcilerTables(schema, metadata, **tables)


def create_reconciler_tables(op: Operations, schema: str, names: Sequence[str]) -> None:
    """Create the tables ``names`` of :func:`reconciler_tables` and their indexes in ``schema``.

    Each migration names the tables it introduces, so a fresh database and an upgraded one
    end with the same tables.
    """
    validate_schema(schema)
    for name in names:
        op.create_table(name, *_COLUMNS[name](), schema=schema)
    for index, table, index_columns in _INDEXES:
        if table in names:
            op.create_index(index, table, list(index_columns), schema=schema)


def drop_reconciler_tables(op: Operations, schema: str, names: Sequence[str]) -> None:
    validate_schema(schema)
    for name in reversed(names):
        op.drop_table(name, schema=schema)
