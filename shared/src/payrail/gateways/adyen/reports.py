"""Adyen's Settlement details report as report lines, imported from disk.

Adyen has no "list balance transactions" API: the settlement details report
(``settlement_detail_report_batch_<n>.csv``) is a file Adyen generates per settlement batch,
downloaded from the Customer Area or its report download URL. The fetcher reads the files named
by option ``report_file`` (one CSV, or a folder of them) and yields their lines in
``[since, until)`` plus every payout. Downloading the files itself (report user credentials,
the ``reports/download/MerchantAccount/...`` URL, a webhook telling a report is ready) is not
implemented: drop the files in the folder, or import them with ``payrail recon import-report``.

Columns read: ``Psp Reference`` (Adyen's payment id), ``Merchant Reference`` (payrail's payment
id, which the reconciler matches on: payrail stores the Checkout session id), ``Type``,
``Modification Reference`` (the refund's or chargeback's own reference), ``Creation Date`` with
``TimeZone``, ``Gross Currency`` / ``Gross Debit (GC)`` / ``Gross Credit (GC)``, ``Net Currency``
/ ``Net Debit (NC)`` / ``Net Credit (NC)``, the fees ``Commission``, ``Markup``, ``Scheme Fees``
and ``Interchange`` (NC) and ``Batch Number``. Lines are in the net (settlement) currency:
``net`` is the net credit minus debit, ``fee`` the four fees, ``gross = net + fee``; where the
gross currency differs, the gross amount is kept as the original amount for FX. Every line of a
batch is paid out by that batch's ``MerchantPayout``.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime, tzinfo
from decimal import Decimal, InvalidOperation
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from payrail.gateways.base import (
    GatewayAccountConfig,
    GatewayError,
    ReportFetcher,
    ReportLine,
    ReportLineType,
)
from payrail.money import CurrencyError, Money, normalize_currency

GATEWAY = "adyen"
_TYPES = {
    "settled": ReportLineType.CHARGE,
    "settledbulk": ReportLineType.CHARGE,
    "refunded": ReportLineType.REFUND,
    "refundedbulk": ReportLineType.REFUND,
    "chargeback": ReportLineType.DISPUTE,
    "secondchargeback": ReportLineType.DISPUTE,
    "chargebackreversed": ReportLineType.DISPUTE_REVERSAL,
    "fee": ReportLineType.FEE,
    "misccosts": ReportLineType.FEE,
    "paymentcost": ReportLineType.FEE,
    "merchantpayout": ReportLineType.PAYOUT,
    "depositcorrection": ReportLineType.ADJUSTMENT,
    "invoicededuction": ReportLineType.ADJUSTMENT,
    "balancetransfer": ReportLineType.ADJUSTMENT,
    "refundedreversed": ReportLineType.ADJUSTMENT,
}
_FEES = ("Commission (NC)", "Markup (NC)", "Scheme Fees (NC)", "Interchange (NC)")
_ZONES = {  # Adyen writes abbreviations; Amsterdam time is its default
    "UTC": "UTC",
    "GMT": "UTC",
    "CET": "Europe/Amsterdam",
    "CEST": "Europe/Amsterdam",
    "PST": "America/Los_Angeles",
    "PDT": "America/Los_Angeles",
    "EST": "America/New_York",
    "EDT": "America/New_York",
}
_REQUIRED = {"Psp Reference", "Type", "Creation Date", "Net Currency", "Batch Number"}


def _zone(name: str, where: str) -> tzinfo:
    key = _ZONES.get(name.strip().upper(), name.strip() or "Europe/Amsterdam")
    try:
        return UTC if key == "UTC" else ZoneInfo(key)
    except (ZoneInfoNotFoundError, ValueError):
        raise GatewayError(f"{where}: unknown TimeZone {name!r}") from None


def _minor(row: Mapping[str, str], column: str, currency: str, where: str) -> int:
    text = (row.get(column) or "").strip() or "0"
    try:
        return Money.from_major(Decimal(text), currency).amount
    except (InvalidOperation, CurrencyError) as exc:
        raise GatewayError(f"{where}: {column} {row.get(column)!r}: {exc}") from None


def _line(row: Mapping[str, str], where: str, account: str) -> ReportLine:
    try:
        currency = normalize_currency(row["Net Currency"])
    except CurrencyError as exc:
        raise GatewayError(f"{where}: {exc}") from None
    try:
        local = datetime.strptime(row["Creation Date"].strip(), "%Y-%m-%d %H:%M:%S")
    except ValueError:
        raise GatewayError(
            f"{where}: Creation Date {row['Creation Date']!r} is not yyyy-mm-dd hh:mm:ss"
        ) from None
    created = local.replace(tzinfo=_zone(row.get("TimeZone") or "", where)).astimezone(UTC)
    kind = _TYPES.get(row["Type"].strip().lower().replace(" ", ""), ReportLineType.OTHER)
    net = _minor(row, "Net Credit (NC)", currency, where) - _minor(
        row, "Net Debit (NC)", currency, where
    )
    fee = sum(_minor(row, column, currency, where) for column in _FEES)
    batch = f"{account}:batch-{row['Batch Number'].strip()}"
    psp = row["Psp Reference"].strip()
    modification = (row.get("Modification Reference") or "").strip() or None
    raw: dict[str, object] = {"object": dict(row), "source_id": modification or psp}
    gross_currency = (row.get("Gross Currency") or "").strip().upper()
    if gross_currency and gross_currency != currency and kind is not ReportLineType.PAYOUT:
        gross_credit = _minor(row, "Gross Credit (GC)", gross_currency, where)
        raw["original_amount"] = gross_credit - _minor(
            row, "Gross Debit (GC)", gross_currency, where
        )
        raw["original_currency"] = gross_currency
    if kind is ReportLineType.PAYOUT:
        raw["settlement_reference"] = modification or psp
        fee = 0
    return ReportLine(
        gateway=GATEWAY,
        line_id=f"{psp}:{modification or row['Type'].strip()}",
        type=kind,
        gross=net + fee,
        fee=fee,
        net=net,
        currency=currency,
        created_at=created,
        available_on=created if kind is ReportLineType.PAYOUT else None,
        gateway_payment_id=psp if kind is not ReportLineType.PAYOUT else None,
        payment_id=(row.get("Merchant Reference") or "").strip() or None,
        payout_id=batch,
        reporting_category=row["Type"].strip(),
        raw=raw,
    )


def parse_settlement_details(data: bytes, source: str) -> list[ReportLine]:
    """Lines of one settlement details report; errors name the file and line."""
    reader = csv.DictReader(io.StringIO(data.decode("utf-8-sig"), newline=""))
    if reader.fieldnames is None or not {f.strip() for f in reader.fieldnames} >= _REQUIRED:
        raise GatewayError(f"{source}: line 1: not an Adyen settlement details report")
    reader.fieldnames = [f.strip() for f in reader.fieldnames]
    return [
        _line(row, f"{source}: line {reader.line_num}", (row.get("Merchant Account") or "").strip())
        for row in reader
        if (row.get("Type") or "").strip()
    ]


class AdyenReportFetcher(ReportFetcher):
    def __init__(self, config: GatewayAccountConfig) -> None:
        location = config.options.get("report_file")
        if not location:
            raise GatewayError(
                "Adyen settlement details reports are files: set option report_file to a CSV"
                " or a folder of them (downloading them is not implemented)"
            )
        self._location = Path(location)

    async def lines(self, *, since: datetime, until: datetime) -> AsyncIterator[ReportLine]:
        files = (
            sorted(self._location.glob("*.csv")) if self._location.is_dir() else [self._location]
        )
        for path in files:
            for line in parse_settlement_details(path.read_bytes(), path.name):
                if since <= line.created_at < until or line.type is ReportLineType.PAYOUT:
                    yield line
