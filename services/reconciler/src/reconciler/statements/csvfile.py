"""Bank statements exported as CSV, described by a column mapping.

Every bank exports differently: one signed amount column or separate debit and credit columns,
day-first dates, decimal commas. A :class:`CsvMapping` says which column is which; amounts are
read as decimal text and converted exactly with ``Money.from_major`` (a value with more
decimals than the currency allows is an error, never rounded). Errors name the file and line.
"""

from __future__ import annotations

import csv
import io
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, model_validator

from payrail.money import CurrencyError, Money
from reconciler.statements.model import BankStatement, StatementError, content_hash, lines_frame


class CsvMapping(BaseModel):
    """Which CSV column holds what. Column names are matched exactly (after trimming)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    booking_date: str
    value_date: str | None = None
    amount: str | None = None  # signed: credits positive
    credit: str | None = None  # unsigned amounts in, with ``debit``
    debit: str | None = None  # unsigned amounts out
    currency: str | None = None  # column; or ``default_currency`` for single-currency files
    default_currency: str | None = None
    line_id: str | None = None  # defaults to the line number
    references: tuple[str, ...] = ()
    description: str | None = None
    counterparty: str | None = None
    bank_code: str | None = None
    statement_id: str | None = None  # defaults to the file name
    account: str | None = None
    delimiter: str = ","
    encoding: str = "utf-8-sig"
    date_format: str = "%Y-%m-%d"
    decimal_separator: str = "."
    thousands_separator: str = ""

    @model_validator(mode="after")
    def _one_amount_layout(self) -> Self:
        if (self.amount is None) == (self.credit is None and self.debit is None):
            raise ValueError("map either `amount` (signed) or `credit`/`debit` columns")
        if self.currency is None and self.default_currency is None:
            raise ValueError("map a `currency` column or set `default_currency`")
        return self


class _Reader:
    def __init__(self, mapping: CsvMapping, source: str) -> None:
        self.mapping = mapping
        self.source = source

    def decimal(self, text: str, where: str, column: str) -> Decimal:
        cleaned = text.strip().replace(" ", "")
        if self.mapping.thousands_separator:
            cleaned = cleaned.replace(self.mapping.thousands_separator, "")
        cleaned = cleaned.replace(self.mapping.decimal_separator, ".")
        if cleaned.endswith("-"):  # some banks print 12.50-
            cleaned = "-" + cleaned[:-1]
        try:
            return Decimal(cleaned or "0")
        except InvalidOperation:
            raise StatementError(
                self.source, where, f"{column} {text!r} is not a decimal amount"
            ) from None

    def day(self, text: str, where: str, column: str) -> date:
        try:
            return datetime.strptime(text.strip(), self.mapping.date_format).date()
        except ValueError:
            raise StatementError(
                self.source, where, f"{column} {text!r} does not match {self.mapping.date_format}"
            ) from None

    def cell(self, row: dict[str, str], column: str, where: str) -> str:
        value = row.get(column)
        if value is None:
            raise StatementError(self.source, where, f"column {column!r} is missing")
        return value

    def record(self, row: dict[str, str], n: int, statement_id: str) -> dict[str, Any]:
        m = self.mapping
        where = f"line {n}"
        currency = (
            self.cell(row, m.currency, where).strip() if m.currency else ""
        ) or m.default_currency
        assert currency is not None  # the mapping validator guarantees one of the two
        if m.amount is not None:
            major = self.decimal(self.cell(row, m.amount, where), where, m.amount)
        else:
            credit = self.decimal(row.get(m.credit or "", "") or "", where, m.credit or "credit")
            debit = self.decimal(row.get(m.debit or "", "") or "", where, m.debit or "debit")
            major = abs(credit) - abs(debit)
        try:
            amount = Money.from_major(major, currency).amount
        except CurrencyError as exc:
            raise StatementError(self.source, where, str(exc)) from None
        booked = self.day(self.cell(row, m.booking_date, where), where, m.booking_date)

        def optional(column: str | None) -> str | None:
            return (row.get(column) or "").strip() or None if column else None

        return {
            "statement_id": statement_id,
            "line_id": optional(m.line_id) or f"{statement_id}/{n}",
            "account": m.account,
            "booking_date": booked,
            "value_date": self.day(row[m.value_date], where, m.value_date)
            if m.value_date and (row.get(m.value_date) or "").strip()
            else booked,
            "amount": amount,
            "currency": currency.upper(),
            "references": [ref for column in m.references if (ref := optional(column))],
            "description": optional(m.description),
            "counterparty": optional(m.counterparty),
            "bank_code": optional(m.bank_code),
        }


def parse_csv(data: bytes, source: str, mapping: CsvMapping) -> list[BankStatement]:
    try:
        text = data.decode(mapping.encoding)
    except UnicodeDecodeError as exc:
        raise StatementError(source, f"byte {exc.start}", f"not {mapping.encoding} text") from None
    rows = csv.DictReader(io.StringIO(text, newline=""), delimiter=mapping.delimiter)
    if rows.fieldnames is None:
        raise StatementError(source, "line 1", "no header row")
    rows.fieldnames = [name.strip() for name in rows.fieldnames]
    statement_id = mapping.statement_id or source.rsplit("/", 1)[-1]
    reader = _Reader(mapping, source)
    try:
        records = [
            reader.record(row, rows.line_num, statement_id)
            for row in rows
            if any((value or "").strip() for value in row.values() if isinstance(value, str))
        ]
    except csv.Error as exc:
        raise StatementError(source, f"line {rows.line_num}", f"malformed CSV: {exc}") from None
    days = [r["booking_date"] for r in records]
    return [
        BankStatement(
            source=source,
            format="csv",
            statement_id=statement_id,
            account=mapping.account,
            currency=records[0]["currency"] if records else mapping.default_currency,
            period_start=min(days, default=None),
            period_end=max(days, default=None),
            opening_balance=None,
            closing_balance=None,
            content_hash=content_hash(data),
            lines=lines_frame(records),
        )
    ]
