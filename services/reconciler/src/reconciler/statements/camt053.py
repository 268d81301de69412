"""ISO 20022 camt.053 (BankToCustomerStatement), versions .001.02 onwards.

Parsed as a stream with defusedxml (no entity expansion, no external DTDs: a statement comes
from outside) and matched on local element names, so every version's namespace reads the same;
the few structures that moved between versions (``Sts`` became ``Sts/Cd`` in .08, party names
moved under ``Pty``) are read in both places. Optional elements may be missing anywhere.

One bank line per booked ``Ntry``: its amount is what moved on the account. The references of
all its ``TxDtls`` (end-to-end id, account servicer reference, instruction and transaction ids,
structured creditor reference) are kept, so a batch booking that settles several payouts
matches each of them. Pending and informational entries are not money yet and are skipped.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from datetime import date
from typing import Any
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException  # type: ignore[import-untyped]
from defusedxml.ElementTree import iterparse  # type: ignore[import-untyped]

from payrail.money import CurrencyError, Money
from reconciler.statements.model import (
    BankStatement,
    StatementError,
    check_balances,
    content_hash,
    lines_frame,
)

_NAMESPACE = "urn:iso:std:iso:20022:tech:xsd:camt.053.001."
_REFERENCE_ELEMENTS = (
    "MsgId",
    "AcctSvcrRef",
    "PmtInfId",
    "InstrId",
    "EndToEndId",
    "TxId",
    "UETR",
    "ClrSysRef",
)
_OPENING = ("OPBD", "PRCD")
_CLOSING = ("CLBD",)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _child(element: Element | None, *path: str) -> Element | None:
    for name in path:
        if element is None:
            return None
        element = next((c for c in element if _local(c.tag) == name), None)
    return element


def _children(element: Element | None, name: str) -> Iterator[Element]:
    if element is not None:
        yield from (c for c in element if _local(c.tag) == name)


def _text(element: Element | None, *path: str) -> str | None:
    found = _child(element, *path)
    if found is None or found.text is None:
        return None
    return found.text.strip() or None


def _date(element: Element | None) -> date | None:
    """``Dt`` or the date part of ``DtTm``."""
    text = _text(element, "Dt") or _text(element, "DtTm")
    return date.fromisoformat(text[:10]) if text else None


class _Statement:
    """Reads one ``Stmt`` element; ``where`` prefixes every error with its element path."""

    def __init__(self, element: Element, source: str, index: int, digest: str) -> None:
        self.element = element
        self.source = source
        self.where = f"Stmt[{index}]"
        self.digest = digest

    def fail(self, where: str, message: str) -> StatementError:
        return StatementError(self.source, f"{self.where}/{where}", message)

    def money(self, element: Element | None, where: str, fallback_currency: str | None) -> int:
        amount = _child(element, "Amt")
        if amount is None or not (amount.text or "").strip():
            raise self.fail(f"{where}/Amt", "amount is missing")
        currency = amount.get("Ccy") or fallback_currency
        if not currency:
            raise self.fail(f"{where}/Amt", "amount has no Ccy")
        try:
            minor = Money.from_major(amount.text.strip(), currency).amount  # type: ignore[union-attr]
        except (CurrencyError, ArithmeticError, ValueError) as exc:
            raise self.fail(
                f"{where}/Amt", f"bad amount {amount.text!r} {currency}: {exc}"
            ) from None
        indicator = _text(element, "CdtDbtInd")
        if indicator not in ("CRDT", "DBIT"):
            raise self.fail(f"{where}/CdtDbtInd", f"expected CRDT or DBIT, got {indicator!r}")
        return minor if indicator == "CRDT" else -minor

    def parse(self) -> BankStatement:
        stmt = self.element
        statement_id = _text(stmt, "Id")
        if statement_id is None:
            raise self.fail("Id", "statement has no Id")
        account = _text(stmt, "Acct", "Id", "IBAN") or _text(stmt, "Acct", "Id", "Othr", "Id")
        currency = _text(stmt, "Acct", "Ccy")
        opening = closing = None
        for n, balance in enumerate(_children(stmt, "Bal"), 1):
            code = _text(balance, "Tp", "CdOrPrtry", "Cd")
            if code in _OPENING and opening is None:
                opening = self.money(balance, f"Bal[{n}]", currency)
            elif code in _CLOSING:
                closing = self.money(balance, f"Bal[{n}]", currency)
        records = [
            record
            for n, entry in enumerate(_children(stmt, "Ntry"), 1)
            if (record := self.entry(entry, n, statement_id, account, currency)) is not None
        ]
        check_balances(
            self.source, self.where, opening, closing, (int(r["amount"]) for r in records)
        )
        period = _child(stmt, "FrToDt")
        start = _text(period, "FrDtTm")
        end = _text(period, "ToDtTm")
        return BankStatement(
            source=self.source,
            format="camt.053",
            statement_id=statement_id,
            account=account,
            currency=currency,
            period_start=date.fromisoformat(start[:10]) if start else None,
            period_end=date.fromisoformat(end[:10]) if end else None,
            opening_balance=opening,
            closing_balance=closing,
            content_hash=self.digest,
            lines=lines_frame(records),
        )

    def entry(
        self, entry: Element, n: int, statement_id: str, account: str | None, currency: str | None
    ) -> dict[str, Any] | None:
        where = f"Ntry[{n}]"
        status = _text(entry, "Sts", "Cd") or _text(entry, "Sts")
        if status is not None and status != "BOOK":
            return None
        amount = self.money(entry, where, currency)
        try:
            booked = _date(_child(entry, "BookgDt"))
            valued = _date(_child(entry, "ValDt"))
        except ValueError as exc:
            raise self.fail(where, f"bad date: {exc}") from None
        if booked is None and valued is None:
            raise self.fail(where, "entry has neither BookgDt nor ValDt")
        amount_element = _child(entry, "Amt")
        references: list[str] = []
        descriptions: list[str] = []
        end_to_end: str | None = None
        counterparty: str | None = None
        side = "Dbtr" if amount >= 0 else "Cdtr"
        for details in _children(_child(entry, "NtryDtls"), "TxDtls"):
            refs = _child(details, "Refs")
            for name in _REFERENCE_ELEMENTS:
                value = _text(refs, name)
                if value and value.upper() != "NOTPROVIDED":
                    references.append(value)
                    if name == "EndToEndId" and end_to_end is None:
                        end_to_end = value
            remittance = _child(details, "RmtInf")
            creditor_ref = _text(remittance, "Strd", "CdtrRefInf", "Ref")
            if creditor_ref:
                references.append(creditor_ref)
            descriptions.extend(t.text.strip() for t in _children(remittance, "Ustrd") if t.text)
            extra = _text(details, "AddtlTxInf")
            if extra:
                descriptions.append(extra)
            parties = _child(details, "RltdPties")
            counterparty = (
                counterparty or _text(parties, side, "Nm") or _text(parties, side, "Pty", "Nm")
            )
        extra = _text(entry, "AddtlNtryInf")
        if extra:
            descriptions.append(extra)
        servicer_ref = _text(entry, "AcctSvcrRef")
        if servicer_ref:
            references.insert(0, servicer_ref)
        return {
            "statement_id": statement_id,
            "line_id": servicer_ref or _text(entry, "NtryRef") or f"{statement_id}/{n}",
            "account": account,
            "booking_date": booked or valued,
            "value_date": valued or booked,
            "amount": amount,
            "currency": (amount_element.get("Ccy") if amount_element is not None else None)
            or currency,
            "end_to_end_id": end_to_end,
            "references": list(dict.fromkeys(references)),
            "bank_code": _text(entry, "BkTxCd", "Domn", "Fmly", "SubFmlyCd")
            or _text(entry, "BkTxCd", "Prtry", "Cd"),
            "counterparty": counterparty,
            "description": " ".join(descriptions) or None,
        }


def parse_camt053(data: bytes, source: str) -> list[BankStatement]:
    digest = content_hash(data)
    statements: list[BankStatement] = []
    checked_root = False
    try:
        for event, element in iterparse(io.BytesIO(data), events=("start", "end")):
            if event == "start" and not checked_root:
                checked_root = True
                namespace = element.tag[1:].split("}", 1)[0] if element.tag.startswith("{") else ""
                if not namespace.startswith(_NAMESPACE):
                    raise StatementError(
                        source,
                        _local(element.tag),
                        f"not a camt.053 document ({namespace or 'no namespace'})",
                    )
            elif event == "end" and _local(element.tag) == "Stmt":
                statements.append(_Statement(element, source, len(statements) + 1, digest).parse())
                element.clear()
    except ParseError as exc:
        line, column = exc.position
        raise StatementError(source, f"line {line}, column {column}", "malformed XML") from None
    except DefusedXmlException as exc:
        raise StatementError(source, "", f"refused: {type(exc).__name__}") from None
    if not statements:
        raise StatementError(source, "BkToCstmrStmt", "no Stmt element")
    return statements
