"""Razorpay settlement reconciliation rows as report lines - from the API or an exported CSV.

API (official SDK, ``GET /v1/settlements/recon/combined``): the recon report lists the
transactions *settled* in a month (``year``, ``month``, paged with ``count``/``skip``), each with
its settlement id and UTR. The fetcher reads every month from ``since`` to
``settlement_lookahead_days`` (option, default 7) after ``until`` - a payment of the 31st is
settled in the next month - keeps the rows created in ``[since, until)``, and adds one payout
line per settlement those rows belong to, from the settlement entity (amount, UTR, status). A
failed settlement also yields a ``payout_failure`` line.

Money: ``fee`` already includes ``tax`` (GST on the fee); ``net = credit - debit`` is what the
row moved, ``gross = net + fee``. ``gateway_payment_id`` is the order id - what payrail's
Razorpay client stores - and payrail's payment id is read from the order's notes or receipt.
A dispute is an adjustment with a ``dispute_id``: a debit is the chargeback, a credit its
reversal.

Not in the recon report: transactions captured but not yet settled (Razorpay settles T+2 or
later). The reconciler sees them as not at the gateway until they settle; reconcile a month once
its last settlements are in, or accept those rows as cut-off.

File: with option ``report_file`` the rows come from a CSV export of the same report (the API's
column names; amounts in rupees, i.e. major units, converted exactly; timestamps as Unix seconds,
ISO 8601 or ``dd/mm/yyyy HH:MM:SS`` in India time). Payouts are then summed per settlement id.
"""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import AsyncIterator, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from functools import partial
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from payrail.gateways.base import (
    GatewayAccountConfig,
    GatewayError,
    ReportFetcher,
    ReportLine,
    ReportLineType,
)
from payrail.gateways.razorpay.payments import RazorpayApi
from payrail.money import CurrencyError, Money, normalize_currency

GATEWAY = "razorpay"
JsonObject = dict[str, Any]
_PAGE = 1000
_INDIA = ZoneInfo("Asia/Kolkata")
_TYPES = {
    "payment": ReportLineType.CHARGE,
    "refund": ReportLineType.REFUND,
    "adjustment": ReportLineType.ADJUSTMENT,
}


def _type(row: Mapping[str, Any], net: int) -> ReportLineType:
    kind = str(row.get("type") or "").lower()
    if row.get("dispute_id") and kind in ("adjustment", "dispute"):
        return ReportLineType.DISPUTE if net < 0 else ReportLineType.DISPUTE_REVERSAL
    return _TYPES.get(kind, ReportLineType.OTHER)


def _payrail_id(row: Mapping[str, Any]) -> str | None:
    notes = row.get("notes")
    if isinstance(notes, Mapping) and notes.get("payrail_payment_id"):
        return str(notes["payrail_payment_id"])
    receipt = row.get("order_receipt")
    return str(receipt) if receipt else None


def recon_line(
    row: Mapping[str, Any], *, credit: int, debit: int, fee: int, tax: int, created_at: datetime
) -> ReportLine:
    """One recon row as a line; amounts already in minor units."""
    net = credit - debit
    kind = _type(row, net)
    raw: dict[str, object] = {"object": dict(row)}
    source = (
        row.get("dispute_id")
        if kind in (ReportLineType.DISPUTE, ReportLineType.DISPUTE_REVERSAL)
        else row.get("entity_id")
    )
    if source:
        raw["source_id"] = str(source)
    if row.get("settlement_utr"):
        raw["settlement_reference"] = str(row["settlement_utr"])
    return ReportLine(
        gateway=GATEWAY,
        line_id=str(row["entity_id"]),
        type=kind,
        gross=net + fee,
        fee=fee,
        net=net,
        currency=normalize_currency(str(row.get("currency") or "INR")),
        created_at=created_at,
        gateway_payment_id=str(row.get("order_id") or row.get("payment_id") or "") or None,
        payment_id=_payrail_id(row),
        payout_id=str(row["settlement_id"]) if row.get("settlement_id") else None,
        reporting_category=str(row.get("type") or "") or None,
        tax=tax,
        raw=raw,
    )


def settlement_lines(settlement: Mapping[str, Any], currency: str) -> Iterator[ReportLine]:
    """The payout line of a settlement entity, and its failure when Razorpay says it failed."""
    amount = int(settlement["amount"])
    created = datetime.fromtimestamp(int(settlement["created_at"]), UTC)
    raw: dict[str, object] = {"object": dict(settlement), "source_id": str(settlement["id"])}
    if settlement.get("utr"):
        raw["settlement_reference"] = str(settlement["utr"])
    yield ReportLine(
        gateway=GATEWAY,
        line_id=str(settlement["id"]),
        type=ReportLineType.PAYOUT,
        gross=-amount,
        fee=0,
        net=-amount,
        currency=currency,
        created_at=created,
        available_on=created,
        payout_id=str(settlement["id"]),
        reporting_category="settlement",
        raw=raw,
    )
    if settlement.get("status") == "failed":
        yield ReportLine(
            gateway=GATEWAY,
            line_id=f"{settlement['id']}:failed",
            type=ReportLineType.PAYOUT_FAILURE,
            gross=amount,
            fee=0,
            net=amount,
            currency=currency,
            created_at=created,
            reporting_category="settlement_failed",
            raw={"object": dict(settlement), "source_id": str(settlement["id"])},
        )


def _months(since: datetime, until: datetime) -> Iterator[tuple[int, int]]:
    year, month = since.year, since.month
    while (year, month) <= (until.year, until.month):
        yield year, month
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)


def _recon_page(params: JsonObject, client: Any) -> JsonObject:
    page: JsonObject = client.settlement.report(params)
    return page


def _settlement(settlement_id: str, client: Any) -> JsonObject:
    settlement: JsonObject = client.settlement.fetch(settlement_id)
    return settlement


class RazorpayReportFetcher(ReportFetcher):
    def __init__(self, config: GatewayAccountConfig) -> None:
        self._config = config
        self._file = config.options.get("report_file")
        self._lookahead = timedelta(days=int(config.options.get("settlement_lookahead_days", "7")))

    async def lines(self, *, since: datetime, until: datetime) -> AsyncIterator[ReportLine]:
        if self._file:
            path = Path(self._file)
            data = await asyncio.to_thread(path.read_bytes)
            for line in parse_recon_csv(data, path.name):
                if since <= line.created_at < until or line.type is ReportLineType.PAYOUT:
                    yield line
            return
        api = RazorpayApi(self._config)
        settlements: dict[str, str] = {}  # settlement id -> currency
        for year, month in _months(since, until + self._lookahead):
            skip = 0
            while True:
                params: JsonObject = {"year": year, "month": month, "count": _PAGE, "skip": skip}
                page = await api.call("settlements.report", partial(_recon_page, params))
                items: list[JsonObject] = list(page.get("items", []))
                for row in items:
                    created = datetime.fromtimestamp(int(row["created_at"]), UTC)
                    if not since <= created < until:
                        continue
                    line = recon_line(
                        row,
                        credit=int(row.get("credit") or 0),
                        debit=int(row.get("debit") or 0),
                        fee=int(row.get("fee") or 0),
                        tax=int(row.get("tax") or 0),
                        created_at=created,
                    )
                    if line.payout_id:
                        settlements.setdefault(line.payout_id, line.currency)
                    yield line
                if len(items) < _PAGE:
                    break
                skip += _PAGE
        for settlement_id, currency in settlements.items():
            settlement = await api.call("settlements.fetch", partial(_settlement, settlement_id))
            for line in settlement_lines(settlement, currency):
                yield line


# ------------------------------------------------------------------------------------ files


def _minor(text: str | None, currency: str, where: str, column: str) -> int:
    cleaned = (text or "").replace(",", "").strip() or "0"
    try:
        return Money.from_major(Decimal(cleaned), currency).amount
    except (InvalidOperation, CurrencyError) as exc:
        raise GatewayError(f"{where}: {column} {text!r}: {exc}") from None


def _moment(text: str | None, where: str, column: str) -> datetime | None:
    value = (text or "").strip()
    if not value:
        return None
    if value.isdigit():
        return datetime.fromtimestamp(int(value), UTC)
    for parse in (datetime.fromisoformat, lambda v: datetime.strptime(v, "%d/%m/%Y %H:%M:%S")):
        try:
            moment = parse(value)
        except ValueError:
            continue
        return moment if moment.tzinfo else moment.replace(tzinfo=_INDIA)
    raise GatewayError(f"{where}: {column} {text!r} is not a timestamp")


def parse_recon_csv(data: bytes, source: str) -> list[ReportLine]:
    """Lines of a Razorpay settlement recon CSV export, plus one payout line per settlement
    (the sum of its rows). Errors name the file and line."""
    reader = csv.DictReader(io.StringIO(data.decode("utf-8-sig"), newline=""))
    required = {"entity_id", "type", "debit", "credit", "fee", "tax", "currency", "created_at"}
    if reader.fieldnames is None or not required <= {f.strip() for f in reader.fieldnames}:
        raise GatewayError(f"{source}: line 1: not a Razorpay settlement recon report")
    reader.fieldnames = [f.strip() for f in reader.fieldnames]
    lines: list[ReportLine] = []
    settled: dict[str, tuple[int, str, str | None, datetime]] = {}
    for row in reader:
        where = f"{source}: line {reader.line_num}"
        try:
            currency = normalize_currency(row.get("currency") or "INR")
        except CurrencyError as exc:
            raise GatewayError(f"{where}: {exc}") from None
        created = _moment(row.get("created_at"), where, "created_at")
        if created is None:
            raise GatewayError(f"{where}: created_at is empty")
        line = recon_line(
            row,
            credit=_minor(row.get("credit"), currency, where, "credit"),
            debit=_minor(row.get("debit"), currency, where, "debit"),
            fee=_minor(row.get("fee"), currency, where, "fee"),
            tax=_minor(row.get("tax"), currency, where, "tax"),
            created_at=created,
        )
        lines.append(line)
        if line.payout_id:
            at = _moment(row.get("settled_at"), where, "settled_at") or created
            total, _, utr, latest = settled.get(line.payout_id, (0, currency, None, at))
            settled[line.payout_id] = (
                total + line.net,
                currency,
                utr or row.get("settlement_utr"),
                max(latest, at),
            )
    for settlement_id, (total, currency, utr, at) in settled.items():
        entity = {
            "id": settlement_id,
            "amount": total,
            "utr": utr,
            "created_at": int(at.timestamp()),
            "status": "processed",
        }
        lines.extend(settlement_lines(entity, currency))
    return lines
