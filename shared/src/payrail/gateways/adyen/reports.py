"""Adyen's Settlement details report as report lines, downloaded or read from disk.

Adyen has no "list balance transactions" API: the settlement details report
(``settlement_detail_report_batch_<n>.csv``) is a CSV file Adyen generates per settlement batch
and publishes for download over HTTPS at
``<ca-test|ca-live>.adyen.com/reports/download/MerchantAccount/<merchant>/<file>``, with HTTP
basic auth of a *report user* (a Customer Area web service user with the Merchant Report role).
The fetcher yields the lines of the files it reads in ``[since, until)`` plus every payout.

Where the files come from:

* option ``report_file``: a CSV on disk, or a folder of them (files imported by hand, or
  dropped there by another tool) - nothing is downloaded;
* otherwise they are downloaded for account ``merchant_account``, as report user
  ``options.report_user`` with password ``api_secret`` (a ``SecretStr``), from ``api_base``
  (default ``https://ca-test.adyen.com``, or ``ca-live`` with option ``platform=live``), under the
  account's timeouts and retry policy (:mod:`payrail.gateways.http`). Option ``report_files``
  names them, comma-separated; a name may hold a placeholder:

  - ``{batch}``: settlement batches, which Adyen numbers consecutively: from option
    ``first_batch`` up to ``last_batch``, or, without it, until the first batch not published
    yet (404) - a new month's run starts where the last one ended;
  - ``{date}``: one file per day of ``[since, until)`` as ``YYYY_MM_DD`` (daily reports); a day
    with no report (404) is skipped.

  A name without placeholder must exist. The default is
  ``settlement_detail_report_batch_{batch}.csv``. A wrong password is a ``GatewayDeclined``
  (Adyen answers 401), never retried; 5xx, 429 and network failures are retried.

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
import itertools
from collections.abc import AsyncIterator, Iterator, Mapping
from datetime import UTC, datetime, timedelta, tzinfo
from decimal import Decimal, InvalidOperation
from pathlib import Path
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx
import structlog

from payrail.gateways.base import (
    GatewayAccountConfig,
    GatewayError,
    ReportFetcher,
    ReportLine,
    ReportLineType,
)
from payrail.gateways.http import (
    CallPolicy,
    GatewayNotFound,
    call,
    status_failure,
    transport_failure,
)
from payrail.money import CurrencyError, Money, normalize_currency

GATEWAY = "adyen"
REPORT_BASES = {"test": "https://ca-test.adyen.com", "live": "https://ca-live.adyen.com"}
DEFAULT_REPORT_FILES = "settlement_detail_report_batch_{batch}.csv"

log = structlog.get_logger("payrail.gateways.adyen.reports")
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
        self._location = Path(location) if location else None
        self._download = None if location else _Download(config)

    async def lines(self, *, since: datetime, until: datetime) -> AsyncIterator[ReportLine]:
        for name, data in await self._files(since, until):
            for line in parse_settlement_details(data, name):
                if since <= line.created_at < until or line.type is ReportLineType.PAYOUT:
                    yield line

    async def _files(self, since: datetime, until: datetime) -> list[tuple[str, bytes]]:
        if self._download is not None:
            return await self._download.files(since, until)
        assert self._location is not None
        paths = (
            sorted(self._location.glob("*.csv")) if self._location.is_dir() else [self._location]
        )
        return [(path.name, path.read_bytes()) for path in paths]


class _Download:
    """Report files of one merchant account from Adyen's report download URL."""

    def __init__(self, config: GatewayAccountConfig) -> None:
        user = config.options.get("report_user")
        if not config.merchant_account or not user or config.api_secret is None:
            raise GatewayError(
                "Adyen settlement details reports: set merchant_account, options.report_user and"
                " api_secret (the report user's password) to download them, or option"
                " report_file to read them from disk"
            )
        platform = config.options.get("platform", "test")
        base = config.api_base or REPORT_BASES.get(platform)
        if base is None:
            raise GatewayError(f"Adyen platform {platform!r} is neither test nor live")
        self._base = base.rstrip("/")
        self._merchant = config.merchant_account
        self._auth = (user, config.api_secret)
        self._names = [
            name.strip()
            for name in config.options.get("report_files", DEFAULT_REPORT_FILES).split(",")
            if name.strip()
        ]
        self._first_batch = int(config.options.get("first_batch", "1"))
        last = config.options.get("last_batch")
        self._last_batch = int(last) if last else None
        self._policy = CallPolicy.for_account(config)

    async def files(self, since: datetime, until: datetime) -> list[tuple[str, bytes]]:
        user, password = self._auth
        auth = httpx.BasicAuth(user, password.get_secret_value())
        async with httpx.AsyncClient(auth=auth, timeout=self._policy.timeout) as client:
            found: list[tuple[str, bytes]] = []
            for template in self._names:
                if "{batch}" in template:
                    for batch in itertools.count(self._first_batch):
                        if self._last_batch is not None and batch > self._last_batch:
                            break
                        name = template.replace("{batch}", str(batch))
                        data = await self._get(client, name, required=self._last_batch is not None)
                        if data is None:
                            break  # the next batch is not settled yet
                        found.append((name, data))
                elif "{date}" in template:
                    for day in _days(since, until):
                        name = template.replace("{date}", day.strftime("%Y_%m_%d"))
                        data = await self._get(client, name, required=False)
                        if data is not None:
                            found.append((name, data))
                else:
                    data = await self._get(client, template, required=True)
                    assert data is not None
                    found.append((template, data))
            return found

    async def _get(self, client: httpx.AsyncClient, name: str, *, required: bool) -> bytes | None:
        """One report file; ``None`` when Adyen has none of that name and it is not required."""
        url = (
            f"{self._base}/reports/download/MerchantAccount/"
            f"{quote(self._merchant, safe='')}/{quote(name, safe='')}"
        )

        async def attempt() -> bytes:
            try:
                response = await client.get(url)
            except httpx.HTTPError as exc:
                raise transport_failure(exc, gateway=GATEWAY) from exc
            if response.status_code != 200:
                raise status_failure(
                    response.status_code,
                    gateway=GATEWAY,
                    detail=f"report {name}",
                    retry_after=response.headers.get("Retry-After"),
                )
            return response.content

        try:
            return await call(self._policy, GATEWAY, "report download", attempt)
        except GatewayNotFound:
            if required:
                raise
            log.info("adyen_report_not_published", merchant_account=self._merchant, report=name)
            return None


def _days(since: datetime, until: datetime) -> Iterator[datetime]:
    day = since.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    while day < until:
        yield day
        day += timedelta(days=1)
