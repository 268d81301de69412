"""SWIFT MT940 customer statements, read with the maintained ``mt-940`` package.

The package's opt-in fixes are all switched on (``Options.all()``): among them a reversal of a
credit (``RC``) is a debit, as money leaves the account. Each ``:61:`` is one bank line; its
customer and bank references and the ``:86:`` information to account owner are kept as
references and description, where payout ids, UTRs and trace numbers usually sit. Errors name
the line of the file, which the package itself does not track.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

import mt940

from payrail.money import CurrencyError, Money
from reconciler.statements.model import (
    BankStatement,
    StatementError,
    check_balances,
    content_hash,
    lines_frame,
)

_TAG = re.compile(r"^:(?P<tag>\d{2}[A-Z]?|NS):", re.MULTILINE)
_NO_REFERENCE = {"NONREF", "NOTPROVIDED", ""}


def _minor(amount: Decimal, currency: str, source: str, where: str) -> int:
    try:
        return Money.from_major(amount, currency).amount
    except CurrencyError as exc:
        raise StatementError(source, where, str(exc)) from None


def _tag_lines(text: str, tag: str) -> list[int]:
    """1-based line numbers of every ``:tag:`` in ``text``, in order."""
    return [
        text.count("\n", 0, m.start()) + 1 for m in _TAG.finditer(text) if m.group("tag") == tag
    ]


def _balance(value: Any, source: str, where: str) -> int | None:
    if value is None:
        return None
    amount = value.amount
    return _minor(amount.amount, amount.currency, source, where)


def parse_mt940(data: bytes, source: str) -> list[BankStatement]:
    digest = content_hash(data)
    text = data.decode("utf-8", errors="replace").replace("\r\n", "\n")
    try:
        blocks = mt940.parse_statements(text, options=mt940.Options.all())
    except (RuntimeError, ValueError, ArithmeticError) as exc:
        detail = exc.args[0] if exc.args else type(exc).__name__
        raise StatementError(source, "", f"not valid MT940: {detail}") from None
    blocks = [block for block in blocks if block.data.get("transaction_reference")]
    if not blocks:
        raise StatementError(source, "line 1", "no :20: statement reference")
    line_numbers = iter(_tag_lines(text, "61"))
    block_lines = iter(_tag_lines(text, "20"))
    statements = []
    for block in blocks:
        header = f"line {next(block_lines, '?')}"
        info = block.data
        reference = str(info["transaction_reference"])
        number = info.get("statement_number")
        statement_id = f"{reference}/{number}" if number else reference
        account = info.get("account_identification")
        if not account:
            raise StatementError(source, header, "statement has no :25: account")
        opening = info.get("final_opening_balance")
        closing = info.get("final_closing_balance")
        records: list[dict[str, Any]] = []
        for n, transaction in enumerate(block, 1):
            where = f"line {next(line_numbers, '?')} (:61:)"
            tx = transaction.data
            amount = tx.get("amount")
            currency = (amount.currency if amount else None) or block.currency
            if amount is None or not currency:
                raise StatementError(source, where, "statement line without amount or currency")
            references = [
                str(ref).strip()
                for ref in (tx.get("customer_reference"), tx.get("bank_reference"))
                if ref is not None and str(ref).strip().upper() not in _NO_REFERENCE
            ]
            booked = tx.get("entry_date") or tx.get("date")
            records.append(
                {
                    "statement_id": statement_id,
                    "line_id": f"{statement_id}/{n}",
                    "account": str(account),
                    "booking_date": booked,
                    "value_date": tx.get("date"),
                    "amount": _minor(amount.amount, currency, source, where),
                    "currency": currency,
                    "references": references,
                    "bank_code": tx.get("id"),
                    "description": " ".join(
                        str(part).replace("\n", " ").strip()
                        for part in (tx.get("transaction_details"), tx.get("extra_details"))
                        if part
                    )
                    or None,
                }
            )
        opening_minor = _balance(opening, source, header)
        closing_minor = _balance(closing, source, header)
        check_balances(
            source, header, opening_minor, closing_minor, (int(r["amount"]) for r in records)
        )
        statements.append(
            BankStatement(
                source=source,
                format="mt940",
                statement_id=statement_id,
                account=str(account),
                currency=block.currency,
                period_start=opening.date if opening is not None else None,
                period_end=closing.date if closing is not None else None,
                opening_balance=opening_minor,
                closing_balance=closing_minor,
                content_hash=digest,
                lines=lines_frame(records),
            )
        )
    return statements
