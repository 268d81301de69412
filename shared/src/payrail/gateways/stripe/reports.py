"""Stripe balance transactions and payouts as report lines - from the API or an exported CSV.

API (official SDK): balance transactions created in ``[since, until)``, with their source and
its PaymentIntent expanded (the PaymentIntent id is what payrail stores; its metadata carries
``payrail_payment_id``); then the payouts created from ``since`` to ``payout_lookahead_days``
(option, default 10) after ``until``, each with the list of balance transactions it paid out
(``payout`` filter) - which is how a line learns its payout, including a month-end line paid out
in the next month. ``gross`` is the transaction's ``amount``; ``fee`` and ``net`` are Stripe's;
disputes and dispute reversals are told apart by ``reporting_category``. Payout lines come from
the payout objects (arrival date, ACH trace id); a failed payout shows as its
``payout_failure`` balance transaction, whose source is the payout.

localstripe (the dev and test gateway) accepts no list filters and links nothing to payouts:
when a filtered list is refused the fetcher lists everything, filters by date itself and logs
that payout links are unavailable, so lines arrive without ``payout_id``.

File: with option ``report_file`` the lines come from a CSV instead - the Dashboard's balance
transactions export (``id, Type, Source, Amount, Fee, Net, Currency, Created (UTC), Available
On (UTC), ..., Transfer``) or an itemized report of the Reporting API
(``balance_transaction_id, created_utc, ..., gross, fee, net, reporting_category, source_id,
automatic_payout_id, payment_intent_id, payment_metadata[payrail_payment_id]``). Amounts in
those files are decimals in major units; they are converted exactly.
"""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from functools import partial
from pathlib import Path
from typing import Any

import structlog

from payrail.gateways.base import (
    GatewayAccountConfig,
    GatewayDeclined,
    GatewayError,
    ReportFetcher,
    ReportLine,
    ReportLineType,
)
from payrail.gateways.stripe.payments import StripeApi
from payrail.money import CurrencyError, Money, normalize_currency

GATEWAY = "stripe"
JsonObject = dict[str, Any]
log = structlog.get_logger("payrail.gateways.stripe.reports")

_TYPES = {
    "charge": ReportLineType.CHARGE,
    "payment": ReportLineType.CHARGE,
    "refund": ReportLineType.REFUND,
    "payment_refund": ReportLineType.REFUND,
    "stripe_fee": ReportLineType.FEE,
    "tax_fee": ReportLineType.FEE,
    "stripe_fx_fee": ReportLineType.FEE,
    "payout_failure": ReportLineType.PAYOUT_FAILURE,
    "payout_cancel": ReportLineType.PAYOUT_FAILURE,
    "payout": ReportLineType.PAYOUT,
}
_CATEGORIES = {
    "charge": ReportLineType.CHARGE,
    "refund": ReportLineType.REFUND,
    "dispute": ReportLineType.DISPUTE,
    "dispute_reversal": ReportLineType.DISPUTE_REVERSAL,
    "fee": ReportLineType.FEE,
    "payout": ReportLineType.PAYOUT,
    "payout_reversal": ReportLineType.PAYOUT_FAILURE,
}
_EXPAND = ["data.source", "data.source.payment_intent"]
_PAGE = 100


def line_type(
    kind: str | None, category: str | None, *, source_id: str | None = None, amount: int = 0
) -> ReportLineType:
    """Stripe's ``type`` refined by ``reporting_category`` (disputes hide in ``adjustment``);
    without a category (the Dashboard export) a dispute is known by its ``dp_`` source."""
    if category in ("dispute", "dispute_reversal"):
        return _CATEGORIES[category]
    if not category and kind == "adjustment" and (source_id or "").startswith(("dp_", "du_")):
        return ReportLineType.DISPUTE if amount < 0 else ReportLineType.DISPUTE_REVERSAL
    if kind in _TYPES:
        return _TYPES[kind]
    if kind == "adjustment" or category in (None, "", "other_adjustment"):
        return ReportLineType.ADJUSTMENT
    return _CATEGORIES.get(category or "", ReportLineType.OTHER)


def _moment(epoch: int | None) -> datetime | None:
    return datetime.fromtimestamp(epoch, UTC) if epoch else None


def _id_of(value: Any) -> str | None:
    if isinstance(value, Mapping):
        found = value.get("id")
        return str(found) if found else None
    return str(value) if value else None


def _payrail_id(*objects: Any) -> str | None:
    for obj in objects:
        if isinstance(obj, Mapping):
            metadata = obj.get("metadata") or {}
            if metadata.get("payrail_payment_id"):
                return str(metadata["payrail_payment_id"])
    return None


def balance_line(txn: Mapping[str, Any], payout_of: Mapping[str, str]) -> ReportLine:
    """A balance transaction (source expanded) as a report line."""
    source = txn.get("source")
    source_obj = source if isinstance(source, Mapping) else {}
    intent = source_obj.get("payment_intent")
    currency = normalize_currency(str(txn["currency"]))
    raw: dict[str, object] = {"object": dict(txn)}
    source_id = _id_of(source)
    if source_id:
        raw["source_id"] = source_id
    presented = source_obj.get("currency")
    if (
        presented
        and str(presented).upper() != currency
        and isinstance(source_obj.get("amount"), int)
    ):
        raw["original_currency"] = normalize_currency(str(presented))
        sign = -1 if int(txn["amount"]) < 0 else 1
        raw["original_amount"] = sign * int(source_obj["amount"])
    kind = line_type(txn.get("type"), txn.get("reporting_category"))
    return ReportLine(
        gateway=GATEWAY,
        line_id=str(txn["id"]),
        type=kind,
        gross=int(txn["amount"]),
        fee=int(txn.get("fee") or 0),
        net=int(txn["net"]),
        currency=currency,
        created_at=datetime.fromtimestamp(int(txn["created"]), UTC),
        available_on=_moment(txn.get("available_on")),
        gateway_payment_id=_id_of(intent) if kind is not ReportLineType.PAYOUT_FAILURE else None,
        payment_id=_payrail_id(intent, source_obj),
        payout_id=payout_of.get(str(txn["id"])),
        reporting_category=txn.get("reporting_category"),
        raw=raw,
    )


def payout_line(payout: Mapping[str, Any]) -> ReportLine:
    """A payout object as the line that moved money to the bank (``gross`` negative)."""
    amount = int(payout["amount"])
    trace = payout.get("trace_id")
    reference = trace.get("value") if isinstance(trace, Mapping) else None
    raw: dict[str, object] = {"object": dict(payout), "source_id": str(payout["id"])}
    if reference:
        raw["settlement_reference"] = str(reference)
    return ReportLine(
        gateway=GATEWAY,
        line_id=_id_of(payout.get("balance_transaction")) or str(payout["id"]),
        type=ReportLineType.PAYOUT,
        gross=-amount,
        fee=0,
        net=-amount,
        currency=normalize_currency(str(payout["currency"])),
        created_at=datetime.fromtimestamp(int(payout["created"]), UTC),
        available_on=_moment(payout.get("arrival_date")),
        payout_id=str(payout["id"]),
        reporting_category="payout",
        raw=raw,
    )


class StripeReportFetcher(ReportFetcher):
    def __init__(self, config: GatewayAccountConfig) -> None:
        self._config = config
        self._file = config.options.get("report_file")
        self._lookahead = timedelta(days=int(config.options.get("payout_lookahead_days", "10")))

    async def lines(self, *, since: datetime, until: datetime) -> AsyncIterator[ReportLine]:
        if self._file:
            path = Path(self._file)
            data = await asyncio.to_thread(path.read_bytes)
            for line in parse_report_csv(data, path.name):
                if since <= line.created_at < until or line.type is ReportLineType.PAYOUT:
                    yield line
            return
        api = StripeApi(self._config)
        try:
            service = api.client.v1
            txns = await _listed(
                api,
                "balance_transactions.list",
                service.balance_transactions.list_async,
                {"created": _window(since, until), "expand": _EXPAND},
                since,
                until,
            )
            payouts = await _listed(
                api,
                "payouts.list",
                service.payouts.list_async,
                {"created": _window(since, until + self._lookahead)},
                since,
                until + self._lookahead,
            )
            payout_of: dict[str, str] = {}
            for payout in payouts:
                try:
                    paid = await _pages(
                        api,
                        "balance_transactions.list",
                        service.balance_transactions.list_async,
                        {"payout": str(payout["id"])},
                    )
                except GatewayDeclined:
                    log.warning(
                        "stripe_payout_links_unavailable",
                        detail="the server refuses the payout filter (localstripe?); lines come"
                        " without payout_id",
                    )
                    break
                payout_of.update((str(t["id"]), str(payout["id"])) for t in paid)
        finally:  # everything is fetched before the first line is handed out
            await api.aclose()
        for txn in txns:
            if txn.get("type") != "payout":  # payouts come from the payout objects below
                yield balance_line(txn, payout_of)
        for payout in payouts:
            yield payout_line(payout)


def _window(since: datetime, until: datetime) -> dict[str, int]:
    return {"gte": int(since.timestamp()), "lt": int(until.timestamp())}


ListCall = Callable[[Any], Awaitable[Any]]


async def _pages(
    api: StripeApi, operation: str, list_call: ListCall, params: JsonObject
) -> list[JsonObject]:
    """Every object of a Stripe list, page by page, each page under the call policy."""
    found: list[JsonObject] = []
    cursor: str | None = None
    while True:
        page_params = {**params, "limit": _PAGE, **({"starting_after": cursor} if cursor else {})}
        page = await api.call(operation, partial(list_call, page_params))
        objects = [obj.to_dict() for obj in page.data]
        found.extend(objects)
        if not page.has_more or not objects:
            return found
        cursor = str(objects[-1]["id"])


async def _listed(
    api: StripeApi,
    operation: str,
    list_call: ListCall,
    params: JsonObject,
    since: datetime,
    until: datetime,
) -> list[JsonObject]:
    """A ``created``-filtered list; where the server refuses filters, everything filtered here."""
    try:
        return await _pages(api, operation, list_call, params)
    except GatewayDeclined:
        log.warning(
            "stripe_list_filters_unsupported",
            operation=operation,
            detail="the server refuses list filters (localstripe?); filtering by date locally",
        )
    unfiltered = {k: v for k, v in params.items() if k != "created"}
    everything = await _pages(api, operation, list_call, unfiltered)
    lo, hi = int(since.timestamp()), int(until.timestamp())
    return [obj for obj in everything if lo <= int(obj["created"]) < hi]


# ------------------------------------------------------------------------------------ files

_EXPORT = {  # Dashboard "balance transactions" export -> itemized report column names
    "id": "balance_transaction_id",
    "Type": "type",
    "Source": "source_id",
    "Amount": "gross",
    "Fee": "fee",
    "Net": "net",
    "Currency": "currency",
    "Created (UTC)": "created_utc",
    "Available On (UTC)": "available_on_utc",
    "Description": "description",
    "Customer Facing Amount": "customer_facing_amount",
    "Customer Facing Currency": "customer_facing_currency",
    "Transfer": "automatic_payout_id",
}


def _major(row: Mapping[str, str], column: str, currency: str, where: str) -> int:
    text = (row.get(column) or "0").replace(",", "").strip() or "0"
    try:
        return Money.from_major(Decimal(text), currency).amount
    except (InvalidOperation, CurrencyError) as exc:
        raise GatewayError(f"{where}: {column} {row.get(column)!r}: {exc}") from None


def _utc(text: str | None, where: str) -> datetime | None:
    if not text or not text.strip():
        return None
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise GatewayError(f"{where}: bad timestamp {text!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def parse_report_csv(data: bytes, source: str) -> list[ReportLine]:
    """Lines of a Stripe balance transactions export or itemized balance report.

    Payouts in these files are transactions of type/category ``payout``; their own id is the
    ``source_id``. Errors name the file and line.
    """
    reader = csv.DictReader(io.StringIO(data.decode("utf-8-sig"), newline=""))
    if reader.fieldnames is None:
        raise GatewayError(f"{source}: line 1: no header row")
    headers = [_EXPORT.get(name.strip(), name.strip()) for name in reader.fieldnames]
    missing = {"balance_transaction_id", "gross", "net", "currency", "created_utc"} - set(headers)
    if missing:
        raise GatewayError(
            f"{source}: line 1: not a Stripe balance report (missing {sorted(missing)})"
        )
    reader.fieldnames = headers
    lines = []
    for row in reader:
        where = f"{source}: line {reader.line_num}"
        try:
            currency = normalize_currency(row["currency"])
        except CurrencyError as exc:
            raise GatewayError(f"{where}: {exc}") from None
        created = _utc(row["created_utc"], where)
        if created is None:
            raise GatewayError(f"{where}: created_utc is empty")
        source_id = (row.get("source_id") or "").strip() or None
        gross = _major(row, "gross", currency, where)
        kind = line_type(
            row.get("type"), row.get("reporting_category"), source_id=source_id, amount=gross
        )
        payout = (row.get("automatic_payout_id") or "").strip() or None
        raw: dict[str, object] = {"object": dict(row)}
        if source_id:
            raw["source_id"] = source_id
        presented = (row.get("customer_facing_currency") or "").strip().upper()
        if (
            presented
            and presented != currency
            and (row.get("customer_facing_amount") or "").strip()
        ):
            original = abs(_major(row, "customer_facing_amount", presented, where))
            raw["original_amount"] = -original if gross < 0 else original
            raw["original_currency"] = presented
        lines.append(
            ReportLine(
                gateway=GATEWAY,
                line_id=row["balance_transaction_id"].strip(),
                type=kind,
                gross=gross,
                fee=_major(row, "fee", currency, where),
                net=_major(row, "net", currency, where),
                currency=currency,
                created_at=created,
                available_on=_utc(row.get("available_on_utc"), where),
                gateway_payment_id=(row.get("payment_intent_id") or "").strip() or None,
                payment_id=(row.get("payment_metadata[payrail_payment_id]") or "").strip() or None,
                payout_id=source_id if kind is ReportLineType.PAYOUT else payout,
                reporting_category=(row.get("reporting_category") or "").strip() or None,
                raw=raw,
            )
        )
    return lines
