"""The engine's three input datasets as polars frames, and how other shapes become them.

The engine is pure: it takes frames and returns frames. These schemas are the contract for
whoever produces them (the projection, report fetchers, statement parsers, the benchmark
generator). :func:`conform` checks a frame against its schema, fills optional columns, and
refuses floating-point money outright: every amount is an Int64 of minor units.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import polars as pl

from payrail.gateways.base import ReportLine
from reconciler.domain import ReconciliationError

UTC_TS = pl.Datetime("us", "UTC")
STR_LIST = pl.List(pl.String())


@dataclass(frozen=True)
class Schema:
    """A dataset's columns: dtype per column, which ones are required, defaults of the rest."""

    name: str
    columns: Mapping[str, pl.DataType]
    required: frozenset[str]
    defaults: Mapping[str, Any]
    money: frozenset[str]

    def empty(self) -> pl.DataFrame:
        return pl.DataFrame(schema=dict(self.columns))


LEDGER_PAYMENTS = Schema(
    name="ledger payments",
    columns={
        "payment_id": pl.String(),
        "gateway": pl.String(),
        "gateway_payment_id": pl.String(),
        "status": pl.String(),
        "amount": pl.Int64(),
        "currency": pl.String(),
        "amount_refunded": pl.Int64(),
        "user_id": pl.String(),
        "sku": pl.String(),
        "occurred_at": UTC_TS,
    },
    required=frozenset({"payment_id", "gateway", "status", "amount", "currency", "occurred_at"}),
    defaults={"amount_refunded": 0},
    money=frozenset({"amount", "amount_refunded"}),
)

LEDGER_REFUNDS = Schema(
    name="ledger refunds",
    columns={
        "refund_id": pl.String(),
        "payment_id": pl.String(),
        "gateway_refund_id": pl.String(),
        "status": pl.String(),
        "amount": pl.Int64(),
        "currency": pl.String(),
        "occurred_at": UTC_TS,
    },
    required=frozenset({"refund_id", "payment_id", "amount", "currency", "occurred_at"}),
    defaults={"status": "succeeded"},
    money=frozenset({"amount"}),
)

LEDGER_DISPUTES = Schema(
    name="ledger disputes",
    columns={
        "dispute_id": pl.String(),
        "payment_id": pl.String(),
        "gateway_dispute_id": pl.String(),
        "status": pl.String(),  # open | won | lost
        "amount": pl.Int64(),
        "currency": pl.String(),
        "opened_at": UTC_TS,
        "closed_at": UTC_TS,
    },
    required=frozenset({"dispute_id", "payment_id", "status", "amount", "currency", "opened_at"}),
    defaults={},
    money=frozenset({"amount"}),
)

GATEWAY_LINES = Schema(
    name="gateway report lines",
    columns={
        "gateway": pl.String(),
        "line_id": pl.String(),
        "type": pl.String(),
        "gross": pl.Int64(),
        "fee": pl.Int64(),
        "net": pl.Int64(),
        "tax": pl.Int64(),
        "currency": pl.String(),
        "created_at": UTC_TS,
        "available_on": UTC_TS,
        "gateway_payment_id": pl.String(),
        "payment_id": pl.String(),
        # the payout that moved this line to the bank; for a payout line, the payout itself
        "payout_id": pl.String(),
        # the gateway object behind the line: refund / dispute id, or the failed payout of a
        # payout_failure line
        "source_id": pl.String(),
        # what the bank will show for a payout: UTR, ACH trace id, settlement reference
        "settlement_reference": pl.String(),
        "reporting_category": pl.String(),
        "international": pl.Boolean(),
        "original_amount": pl.Int64(),
        "original_currency": pl.String(),
    },
    required=frozenset(
        {"gateway", "line_id", "type", "gross", "fee", "net", "currency", "created_at"}
    ),
    defaults={"tax": 0, "international": False},
    money=frozenset({"gross", "fee", "net", "tax", "original_amount"}),
)

BANK_LINES = Schema(
    name="bank statement lines",
    columns={
        "statement_id": pl.String(),
        "line_id": pl.String(),
        "account": pl.String(),
        "booking_date": pl.Date(),
        "value_date": pl.Date(),
        "amount": pl.Int64(),  # signed: credits positive, debits negative
        "currency": pl.String(),
        "end_to_end_id": pl.String(),
        "references": STR_LIST,  # payout id, settlement id, UTR, trace id, bank references
        "bank_code": pl.String(),  # transaction code (camt BkTxCd, MT940 type) e.g. CHRG
        "counterparty": pl.String(),
        "description": pl.String(),
    },
    required=frozenset({"statement_id", "line_id", "booking_date", "amount", "currency"}),
    defaults={"references": []},
    money=frozenset({"amount"}),
)


def conform(frame: pl.DataFrame, schema: Schema) -> pl.DataFrame:
    """``frame`` with exactly ``schema``'s columns, in order and type.

    Raises :class:`ReconciliationError` naming the dataset and column for a missing required
    column, a float money column, or a value that does not convert.
    """
    missing = sorted(schema.required - set(frame.columns))
    if missing:
        raise ReconciliationError(f"{schema.name}: missing required column(s) {', '.join(missing)}")
    exprs: list[pl.Expr] = []
    for column, dtype in schema.columns.items():
        if column not in frame.columns:
            default = schema.defaults.get(column)
            exprs.append(pl.lit(default, dtype=dtype).alias(column))
            continue
        actual = frame.schema[column]
        if column in schema.money and actual.is_float():
            raise ReconciliationError(
                f"{schema.name}: column {column} is {actual}; money must be integer minor units"
            )
        expr = pl.col(column)
        if isinstance(dtype, pl.Datetime):
            if isinstance(actual, pl.Datetime) and actual.time_zone is None:
                raise ReconciliationError(f"{schema.name}: column {column} has no time zone")
            if isinstance(actual, pl.Datetime):
                expr = expr.dt.convert_time_zone("UTC")
        exprs.append(expr.cast(dtype, strict=True).alias(column))
        if column in schema.defaults and schema.defaults[column] is not None:
            exprs[-1] = exprs[-1].fill_null(pl.lit(schema.defaults[column], dtype=dtype))
    try:
        out = frame.select(exprs)
    except pl.exceptions.PolarsError as exc:
        raise ReconciliationError(f"{schema.name}: {exc}") from exc
    for column in schema.required:
        nulls = out[column].null_count()
        if nulls:
            raise ReconciliationError(f"{schema.name}: {nulls} row(s) without {column}")
    return out


def report_lines_frame(lines: Iterable[ReportLine]) -> pl.DataFrame:
    """Gateway report lines (from any :class:`~payrail.gateways.base.ReportFetcher`) as a frame.

    Fields a :class:`ReportLine` does not carry come from its ``raw`` mapping under documented
    keys, which payrail's report fetchers and file parsers fill: ``source_id``,
    ``settlement_reference``, ``international``, ``original_amount``, ``original_currency``.
    """
    rows = [
        {
            "gateway": line.gateway,
            "line_id": line.line_id,
            "type": str(line.type),
            "gross": line.gross,
            "fee": line.fee,
            "net": line.net,
            "tax": line.tax,
            "currency": line.currency,
            "created_at": line.created_at,
            "available_on": line.available_on,
            "gateway_payment_id": line.gateway_payment_id,
            "payment_id": line.payment_id,
            "payout_id": line.payout_id,
            "source_id": _raw_str(line.raw, "source_id"),
            "settlement_reference": _raw_str(line.raw, "settlement_reference"),
            "reporting_category": line.reporting_category,
            "international": line.raw.get("international") is True,
            "original_amount": _raw_int(line.raw, "original_amount"),
            "original_currency": _raw_str(line.raw, "original_currency"),
        }
        for line in lines
    ]
    if not rows:
        return GATEWAY_LINES.empty()
    return conform(pl.DataFrame(rows, schema=dict(GATEWAY_LINES.columns)), GATEWAY_LINES)


def _raw_str(raw: Mapping[str, object], key: str) -> str | None:
    value = raw.get(key)
    return value if isinstance(value, str) and value else None


def _raw_int(raw: Mapping[str, object], key: str) -> int | None:
    value = raw.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def records_frame(records: Iterable[Mapping[str, Any]], schema: Schema) -> pl.DataFrame:
    """A conformed frame from plain records (dicts): the projection, importers and tests
    produce rows one by one; the engine wants columns."""
    rows = list(records)
    if not rows:
        return schema.empty()
    present = {key for row in rows for key in row}
    unknown = sorted(present - set(schema.columns))
    if unknown:
        raise ReconciliationError(f"{schema.name}: unknown column(s) {', '.join(unknown)}")
    overrides = {
        key: dtype
        for key, dtype in schema.columns.items()
        if key in present and not isinstance(dtype, pl.Datetime)
    }
    frame = pl.DataFrame(rows, schema_overrides=overrides, infer_schema_length=None)
    return conform(frame, schema)
