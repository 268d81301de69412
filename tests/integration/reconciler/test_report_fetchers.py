"""Razorpay settlement recon, PayPal transaction search and Adyen report downloads, over HTTP
against fake gateways."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from payrail.gateways.base import (
    GatewayAccountConfig,
    GatewayDeclined,
    GatewayUnavailable,
    ReportLine,
    ReportLineType,
)
from payrail.gateways.registry import get
from tests.fakes.recon_adyen import FakeAdyenReports
from tests.fakes.recon_paypal import FakePayPalReporting
from tests.fakes.recon_razorpay import FakeRazorpayRecon

MARCH = (datetime(2025, 3, 1, tzinfo=UTC), datetime(2025, 4, 1, tzinfo=UTC))


def at(month: int, day: int, hour: int = 12) -> datetime:
    return datetime(2025, month, day, hour, tzinfo=UTC)


async def fetch(gateway: str, config: GatewayAccountConfig) -> list[ReportLine]:
    fetcher = get(gateway).report_fetcher(config)
    return [line async for line in fetcher.lines(since=MARCH[0], until=MARCH[1])]


@pytest.fixture
def razorpay() -> Iterator[FakeRazorpayRecon]:
    with FakeRazorpayRecon() as fake:
        yield fake


@pytest.fixture
def paypal() -> Iterator[FakePayPalReporting]:
    with FakePayPalReporting() as fake:
        yield fake


def recon_row(
    entity_id: str,
    kind: str,
    created: datetime,
    *,
    credit: int = 0,
    debit: int = 0,
    fee: int = 0,
    tax: int = 0,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "entity_id": entity_id,
        "type": kind,
        "credit": credit,
        "debit": debit,
        "amount": credit + fee if credit else debit,
        "currency": "INR",
        "fee": fee,
        "tax": tax,
        "created_at": int(created.timestamp()),
        **extra,
    }


async def test_razorpay_recon_pages_months_and_settlements(razorpay: FakeRazorpayRecon) -> None:
    razorpay.settle(
        "setl_FEB",
        "UTR0302",
        at(3, 2),
        [recon_row("pay_feb", "payment", at(2, 27), credit=97_640, fee=2_360, tax=360)],
    )
    march = [
        recon_row(
            "pay_1",
            "payment",
            at(3, 3),
            credit=976_400,
            fee=23_600,
            tax=3_600,
            order_id="order_1",
            order_receipt="p1",
        ),
        recon_row(
            "rfnd_1", "refund", at(3, 4), debit=50_000, payment_id="pay_0", order_id="order_0"
        ),
        recon_row(
            "adj_1", "adjustment", at(3, 4), debit=200_000, dispute_id="disp_1", order_id="order_9"
        ),
    ]
    # more rows than one page of the recon API (1,000)
    march += [
        recon_row(f"pay_bulk{n}", "payment", at(3, 10), credit=976, fee=24) for n in range(1_000)
    ]
    razorpay.settle("setl_A", "UTR0305A", at(3, 12), march)
    # captured on the 31st, settled on 2 April: found through the next month's report
    razorpay.settle(
        "setl_B",
        "UTR0402B",
        at(4, 2),
        [
            recon_row(
                "pay_2", "payment", at(3, 31, 20), credit=9_764, fee=236, tax=36, order_id="order_2"
            )
        ],
        status="failed",
    )
    config = GatewayAccountConfig(
        api_key=SecretStr(razorpay.key_id),
        api_secret=SecretStr(razorpay.key_secret),
        api_base=razorpay.url,
    )

    lines = {line.line_id: line for line in await fetch("razorpay", config)}

    assert "pay_feb" not in lines  # created before the period
    assert "setl_FEB" not in lines
    assert sum(1 for line in lines.values() if line.type is ReportLineType.CHARGE) == 1_002
    pay_1 = lines["pay_1"]
    assert (pay_1.gross, pay_1.fee, pay_1.tax, pay_1.net) == (1_000_000, 23_600, 3_600, 976_400)
    assert (pay_1.gateway_payment_id, pay_1.payment_id, pay_1.payout_id) == (
        "order_1",
        "p1",
        "setl_A",
    )
    assert lines["adj_1"].type is ReportLineType.DISPUTE
    settlement = lines["setl_A"]
    assert settlement.type is ReportLineType.PAYOUT
    assert settlement.net == -(976_400 - 50_000 - 200_000 + 1_000 * 976)
    assert settlement.raw["settlement_reference"] == "UTR0305A"
    assert lines["pay_2"].payout_id == "setl_B"
    failure = lines["setl_B:failed"]
    assert (failure.type, failure.net, failure.raw["source_id"]) == (
        ReportLineType.PAYOUT_FAILURE,
        9_764,
        "setl_B",
    )
    months = sorted(
        {
            (r.query["year"], r.query["month"])
            for r in razorpay.requests_to("GET", "/recon/combined")
        }
    )
    assert months == [("2025", "3"), ("2025", "4")]


def money(value: str, currency: str = "USD") -> dict[str, str]:
    return {"currency_code": currency, "value": value}


async def test_paypal_transaction_search_in_31_day_windows_with_oauth(
    paypal: FakePayPalReporting,
) -> None:
    def add(
        txn_id: str, code: str, when: datetime, amount: str, fee: str | None = None, **extra: Any
    ) -> None:
        info = {
            "transaction_id": txn_id,
            "transaction_event_code": code,
            "transaction_initiation_date": when.strftime("%Y-%m-%dT%H:%M:%S+0000"),
            "transaction_amount": money(amount),
            "transaction_status": "S",
            **extra,
        }
        if fee is not None:
            info["fee_amount"] = money(fee)
        paypal.add(**info)

    add("CAP1", "T0006", at(3, 3), "25.00", "-1.03", custom_field="p1", invoice_id="p1")
    add("REF1", "T1107", at(3, 4), "-5.00", "0.20", paypal_reference_id="CAP1", custom_field="p1")
    add("WD1", "T0400", at(3, 5), "-19.17", bank_reference_id="BRF-0305")
    add("CAP2", "T0006", at(3, 20), "10.00", "-0.59", custom_field="p2")
    add("OLD", "T0006", at(2, 20), "99.00", "-3.20", custom_field="p0")
    config = GatewayAccountConfig(
        api_key=SecretStr(paypal.client_id),
        api_secret=SecretStr(paypal.client_secret),
        api_base=paypal.url,
    )

    lines = {line.line_id: line for line in await fetch("paypal", config)}

    assert set(lines) == {"CAP1", "REF1", "WD1", "CAP2"}
    cap = lines["CAP1"]
    assert (cap.type, cap.gross, cap.fee, cap.net, cap.payment_id) == (
        ReportLineType.CHARGE,
        2_500,
        103,
        2_397,
        "p1",
    )
    refund = lines["REF1"]
    assert (refund.type, refund.gross, refund.fee, refund.net) == (
        ReportLineType.REFUND,
        -500,
        -20,
        -480,
    )
    withdrawal = lines["WD1"]
    assert (withdrawal.type, withdrawal.net, withdrawal.raw["settlement_reference"]) == (
        ReportLineType.PAYOUT,
        -1_917,
        "BRF-0305",
    )
    assert cap.payout_id == refund.payout_id == "WD1"  # swept in full by the withdrawal
    assert lines["CAP2"].payout_id is None  # still on the PayPal balance
    searches = paypal.requests_to("GET", "/v1/reporting/transactions")
    assert len(searches) == 1  # March fits one 31-day window
    assert searches[0].headers["authorization"].startswith("Bearer ")
    assert searches[0].query["balance_affecting_records_only"] == "Y"


ADYEN_BATCH = (
    Path(__file__).parents[2]
    / "unit/reconciler/fixtures/adyen/adyen_settlement_detail_report_batch_118.csv"
).read_bytes()


@pytest.fixture
def adyen() -> Iterator[FakeAdyenReports]:
    with FakeAdyenReports() as fake:
        yield fake


def adyen_config(fake: FakeAdyenReports, **options: str) -> GatewayAccountConfig:
    return GatewayAccountConfig(
        api_base=fake.url,
        merchant_account=fake.merchant_account,
        api_secret=SecretStr(fake.password),
        options={"report_user": fake.user, "retry_backoff_initial": "0.01", **options},
    )


def batch(number: int, psp_prefix: str) -> bytes:
    """The fixture's batch 118 renumbered, with its own references."""
    return ADYEN_BATCH.decode().replace(",118\n", f",{number}\n").replace("88", psp_prefix).encode()


async def test_adyen_downloads_settlement_batches_until_the_next_is_not_published(
    adyen: FakeAdyenReports,
) -> None:
    adyen.publish("settlement_detail_report_batch_118.csv", ADYEN_BATCH)
    adyen.publish("settlement_detail_report_batch_119.csv", batch(119, "77"))
    adyen.fail(503, times=1, path_contains="batch_119")  # retried, like any 5xx

    lines = await fetch("adyen", adyen_config(adyen, first_batch="118"))

    payouts = sorted(str(line.payout_id) for line in lines if line.type is ReportLineType.PAYOUT)
    assert payouts == ["PayrailEU:batch-118", "PayrailEU:batch-119"]
    assert len(lines) == 8
    charge = next(line for line in lines if line.payment_id == "pay_01J9")
    assert (charge.gross, charge.fee, charge.net, charge.currency) == (2_500, 53, 2_447, "EUR")
    asked = [r.path.rsplit("/", 1)[1] for r in adyen.requests_to("GET", "/reports/download")]
    assert asked == [
        "settlement_detail_report_batch_118.csv",
        "settlement_detail_report_batch_119.csv",
        "settlement_detail_report_batch_119.csv",
        "settlement_detail_report_batch_120.csv",
    ]
    assert all(
        r.headers["authorization"].startswith("Basic ")
        for r in adyen.requests_to("GET", "/reports/download/MerchantAccount/PayrailEU/")
    )


async def test_adyen_downloads_named_and_daily_files(adyen: FakeAdyenReports) -> None:
    adyen.publish("settlement_detail_report_batch_118.csv", ADYEN_BATCH)
    adyen.publish("daily_settlement_2025_03_05.csv", batch(200, "66"))
    config = adyen_config(
        adyen,
        report_files="settlement_detail_report_batch_118.csv, daily_settlement_{date}.csv",
    )

    lines = await fetch("adyen", config)

    assert {line.payout_id for line in lines} == {"PayrailEU:batch-118", "PayrailEU:batch-200"}
    # one request per day of March; the 30 days without a report are skipped
    assert len(adyen.requests_to("GET", "daily_settlement_")) == 31


async def test_adyen_refuses_a_wrong_report_user_password_without_retrying_or_leaking_it(
    adyen: FakeAdyenReports,
) -> None:
    adyen.publish("settlement_detail_report_batch_118.csv", ADYEN_BATCH)
    config = adyen_config(adyen, first_batch="118").model_copy(
        update={"api_secret": SecretStr("not-the-password")}
    )
    with pytest.raises(GatewayDeclined, match="HTTP 401") as refused:
        await fetch("adyen", config)
    assert "not-the-password" not in str(refused.value)
    assert len(adyen.requests_to("GET", "/reports/download")) == 1


async def test_adyen_a_named_file_that_is_not_published_is_an_error(
    adyen: FakeAdyenReports,
) -> None:
    config = adyen_config(adyen, report_files="settlement_detail_report_batch_999.csv")
    with pytest.raises(GatewayDeclined, match="HTTP 404: report settlement_detail_report_batch"):
        await fetch("adyen", config)


async def test_adyen_gives_up_after_the_retry_budget(adyen: FakeAdyenReports) -> None:
    adyen.fail(503, times=10)
    config = adyen_config(adyen, first_batch="118", retry_max_attempts="3")
    with pytest.raises(GatewayUnavailable, match="after 3 attempt"):
        await fetch("adyen", config)
    assert len(adyen.requests_to("GET", "/reports/download")) == 3
