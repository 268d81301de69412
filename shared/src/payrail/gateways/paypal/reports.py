"""PayPal balance activity as report lines - Transaction Search API or the settlement (STL) file.

API: ``GET /v1/reporting/transactions`` (OAuth2 client credentials through the account's shared
:class:`~payrail.gateways.paypal.payments.PayPalApi`), balance-affecting records only, in windows
of at most 31 days (PayPal's limit), every page. Transaction event codes (T-codes) give the type:
T00xx payments, T1107 refunds, T1106/T1201 reversals and chargebacks, T1202 chargeback
reversals, T01xx fees, T18xx/T19xx adjustments, T04xx withdrawals to the bank (payouts), T1105 a
withdrawal reversed. ``gross`` is the transaction amount, ``fee`` PayPal's fee (positive when
charged). PayPal's ids are its own (capture and refund ids): payrail's payment id comes back in
``custom_field`` / ``invoice_id``, which is what the reconciler matches PayPal lines on.

Payout links: PayPal does not say which transactions a withdrawal moved. The fetcher assigns
lines to withdrawals first-in first-out - a withdrawal takes the oldest unassigned lines whose
total it covers - which is exact for an account swept in full (auto-sweep), and leaves lines it
cannot place without a payout rather than split them. Option ``payout_linkage=none`` turns it
off.

File: with option ``report_file`` the lines come from a Settlement Report (``STL-yyyymmdd...``):
record types in the first column (``CH`` names the columns, ``SB`` rows are transactions),
amounts unsigned in minor units with ``CR``/``DR`` columns for their direction.
"""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from payrail.gateways.base import (
    GatewayAccountConfig,
    GatewayError,
    ReportFetcher,
    ReportLine,
    ReportLineType,
)
from payrail.gateways.paypal.payments import PayPalApi
from payrail.money import CurrencyError, Money, normalize_currency

GATEWAY = "paypal"
JsonObject = dict[str, Any]
_WINDOW = timedelta(days=31)
_PAGE = 500
_EXACT = {
    "T1107": ReportLineType.REFUND,
    "T1106": ReportLineType.DISPUTE,
    "T1201": ReportLineType.DISPUTE,
    "T1202": ReportLineType.DISPUTE_REVERSAL,
    "T1105": ReportLineType.PAYOUT_FAILURE,
}
_PREFIX = {
    "T00": ReportLineType.CHARGE,
    "T01": ReportLineType.FEE,
    "T04": ReportLineType.PAYOUT,
    "T18": ReportLineType.ADJUSTMENT,
    "T19": ReportLineType.ADJUSTMENT,
}


def event_type(code: str, gross: int) -> ReportLineType:
    """The line type of a T-code; a T00xx debit is a payment *sent*, not one received."""
    kind = _EXACT.get(code) or _PREFIX.get(code[:3], ReportLineType.OTHER)
    if kind is ReportLineType.CHARGE and gross < 0:
        return ReportLineType.OTHER
    return kind


def paypal_line(
    *,
    transaction_id: str,
    code: str,
    gross: int,
    fee: int,
    currency: str,
    created_at: datetime,
    payrail_id: str | None,
    reference_id: str | None,
    bank_reference: str | None,
    raw: Mapping[str, Any],
) -> ReportLine:
    kind = event_type(code, gross)
    extra: dict[str, object] = {"object": dict(raw), "source_id": transaction_id}
    if kind is ReportLineType.PAYOUT_FAILURE and reference_id:
        extra["source_id"] = reference_id  # the withdrawal that was reversed
    if kind is ReportLineType.PAYOUT:
        extra["settlement_reference"] = bank_reference or transaction_id
    return ReportLine(
        gateway=GATEWAY,
        line_id=transaction_id,
        type=kind,
        gross=gross,
        fee=fee,
        net=gross - fee,
        currency=currency,
        created_at=created_at,
        available_on=created_at if kind is ReportLineType.PAYOUT else None,
        gateway_payment_id=reference_id if kind is not ReportLineType.CHARGE else transaction_id,
        payment_id=payrail_id,
        payout_id=transaction_id if kind is ReportLineType.PAYOUT else None,
        reporting_category=code,
        raw=extra,
    )


def link_payouts(lines: Iterable[ReportLine]) -> list[ReportLine]:
    """Assign lines to withdrawals first-in first-out (PayPal links none itself)."""
    ordered = sorted(lines, key=lambda line: (line.created_at, line.line_id))
    queue: list[ReportLine] = []
    assigned: dict[str, str] = {}
    for line in ordered:
        if line.type is ReportLineType.PAYOUT:
            taken = _covered(queue, -line.net)
            for queued in queue[:taken]:
                assigned[queued.line_id] = str(line.payout_id)
            del queue[:taken]
        elif line.type is not ReportLineType.PAYOUT_FAILURE:
            queue.append(line)
    return [
        _with_payout(line, assigned[line.line_id]) if line.line_id in assigned else line
        for line in ordered
    ]


def _covered(queue: list[ReportLine], amount: int) -> int:
    """How many of the oldest queued lines a withdrawal of ``amount`` took: the longest run
    summing to exactly ``amount`` (a full sweep), else the longest it can cover."""
    running, exact, within = 0, None, 0
    for n, line in enumerate(queue, 1):
        running += line.net
        if running == amount:
            exact = n
        elif running <= amount:
            within = n
    return exact if exact is not None else within


def _with_payout(line: ReportLine, payout_id: str) -> ReportLine:
    return replace(line, payout_id=payout_id)


def _api_amount(amount: Mapping[str, Any] | None, fallback_currency: str) -> tuple[int, str]:
    if not amount:
        return 0, fallback_currency
    currency = normalize_currency(str(amount.get("currency_code") or fallback_currency))
    return Money.from_major(Decimal(str(amount.get("value", "0"))), currency).amount, currency


def _api_line(detail: Mapping[str, Any]) -> ReportLine:
    info = detail.get("transaction_info") or {}
    gross, currency = _api_amount(info.get("transaction_amount"), "USD")
    fee, _ = _api_amount(info.get("fee_amount"), currency)
    created = datetime.strptime(str(info["transaction_initiation_date"]), "%Y-%m-%dT%H:%M:%S%z")
    return paypal_line(
        transaction_id=str(info["transaction_id"]),
        code=str(info.get("transaction_event_code") or ""),
        gross=gross,
        fee=-fee,  # PayPal reports a charged fee as a negative amount
        currency=currency,
        created_at=created.astimezone(UTC),
        payrail_id=info.get("custom_field") or info.get("invoice_id"),
        reference_id=info.get("paypal_reference_id"),
        bank_reference=info.get("bank_reference_id"),
        raw=info,
    )


class PayPalReportFetcher(ReportFetcher):
    def __init__(self, config: GatewayAccountConfig) -> None:
        self._config = config
        self._file = config.options.get("report_file")
        self._fifo = config.options.get("payout_linkage", "fifo") == "fifo"

    async def lines(self, *, since: datetime, until: datetime) -> AsyncIterator[ReportLine]:
        if self._file:
            path = Path(self._file)
            found = parse_stl(await asyncio.to_thread(path.read_bytes), path.name)
        else:
            found = await self._search(since, until)
        for line in link_payouts(found) if self._fifo else found:
            if since <= line.created_at < until:
                yield line

    async def _search(self, since: datetime, until: datetime) -> list[ReportLine]:
        api = PayPalApi(self._config)
        found: list[ReportLine] = []
        try:
            start = since
            while start < until:
                end = min(start + _WINDOW, until)
                page, pages = 1, 1
                while page <= pages:
                    query = urlencode(
                        {
                            "start_date": start.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                            "end_date": end.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                            "fields": "transaction_info",
                            "balance_affecting_records_only": "Y",
                            "page_size": _PAGE,
                            "page": page,
                        }
                    )
                    answer = await api.request(
                        "GET",
                        f"/v1/reporting/transactions?{query}",
                        operation="reporting.transactions",
                    )
                    found.extend(_api_line(d) for d in answer.get("transaction_details", []))
                    pages = int(answer.get("total_pages") or 1)
                    page += 1
                start = end
        finally:
            await api.aclose()
        return found


# ------------------------------------------------------------------------------------ files


def _stl_time(text: str, where: str) -> datetime:
    try:
        return datetime.strptime(text.strip(), "%Y/%m/%d %H:%M:%S %z").astimezone(UTC)
    except ValueError:
        raise GatewayError(f"{where}: bad date {text!r} (want yyyy/mm/dd hh:mm:ss +hhmm)") from None


def _stl_amount(row: Mapping[str, str], amount: str, direction: str, where: str) -> int:
    text = (row.get(amount) or "0").strip() or "0"
    if not text.isdigit():
        raise GatewayError(f"{where}: {amount} {text!r} is not an amount in minor units")
    sign = {"CR": 1, "DR": -1}.get((row.get(direction) or "CR").strip().upper())
    if sign is None:
        raise GatewayError(f"{where}: {direction} must be CR or DR, got {row.get(direction)!r}")
    return sign * int(text)


def parse_stl(data: bytes, source: str) -> list[ReportLine]:
    """The ``SB`` rows of a PayPal Settlement Report; errors name the file and line."""
    columns: list[str] | None = None
    lines: list[ReportLine] = []
    reader = csv.reader(io.StringIO(data.decode("utf-8-sig"), newline=""))
    for record in reader:
        where = f"{source}: line {reader.line_num}"
        if not record:
            continue
        kind = record[0].strip().strip('"')
        if kind == "CH":
            columns = [name.strip() for name in record[1:]]
        elif kind == "SB":
            if columns is None:
                raise GatewayError(f"{where}: a body row before the column header (CH) row")
            row = dict(zip(columns, (value.strip() for value in record[1:]), strict=False))
            try:
                currency = normalize_currency(row.get("Gross Transaction Currency", ""))
            except CurrencyError as exc:
                raise GatewayError(f"{where}: {exc}") from None
            lines.append(
                paypal_line(
                    transaction_id=row.get("Transaction ID") or f"{source}:{reader.line_num}",
                    code=row.get("Transaction Event Code", ""),
                    gross=_stl_amount(
                        row, "Gross Transaction Amount", "Transaction Debit or Credit", where
                    ),
                    fee=-_stl_amount(row, "Fee Amount", "Fee Debit or Credit", where),
                    currency=currency,
                    created_at=_stl_time(row.get("Transaction Initiation Date", ""), where),
                    payrail_id=row.get("Custom Field") or row.get("Invoice ID") or None,
                    reference_id=row.get("PayPal Reference ID") or None,
                    bank_reference=row.get("Bank Reference ID") or None,
                    raw=row,
                )
            )
    if columns is None:
        raise GatewayError(f"{source}: no CH row: not a PayPal settlement report")
    return lines
