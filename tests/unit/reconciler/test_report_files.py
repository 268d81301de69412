"""Gateway report files from disk, read through each gateway's report fetcher (``report_file``)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from payrail.gateways.base import GatewayAccountConfig, GatewayError, ReportLine, ReportLineType
from payrail.gateways.registry import get
from reconciler.frames import report_lines_frame

FIXTURES = Path(__file__).parent / "fixtures"
EVER = (datetime(2000, 1, 1, tzinfo=UTC), datetime(2100, 1, 1, tzinfo=UTC))


async def read(gateway: str, path: Path) -> list[ReportLine]:
    fetcher = get(gateway).report_fetcher(GatewayAccountConfig(options={"report_file": str(path)}))
    return [line async for line in fetcher.lines(since=EVER[0], until=EVER[1])]


def by_id(lines: list[ReportLine]) -> dict[str, ReportLine]:
    return {line.line_id: line for line in lines}


async def test_stripe_dashboard_export() -> None:
    lines = by_id(await read("stripe", FIXTURES / "stripe_balance_export.csv"))
    charge, refund, dispute, foreign, payout = (
        lines[i] for i in ("txn_3QaB1", "txn_3QaB2", "txn_3QaB3", "txn_3QaB4", "txn_1QxYz2")
    )
    assert (charge.type, charge.gross, charge.fee, charge.net, charge.currency) == (
        ReportLineType.CHARGE,
        20_000,
        610,
        19_390,
        "USD",
    )
    assert charge.payout_id == "po_1QxYz2"  # the export's "Transfer" column
    assert charge.created_at == datetime(2025, 3, 3, 10, 15, tzinfo=UTC)
    assert (refund.type, refund.gross, refund.raw["source_id"]) == (
        ReportLineType.REFUND,
        -500,
        "re_3QaB2",
    )
    # the export has no reporting category: a dispute is an adjustment with a dp_ source
    assert (dispute.type, dispute.gross, dispute.fee, dispute.net) == (
        ReportLineType.DISPUTE,
        -2_000,
        1_500,
        -3_500,
    )
    assert (foreign.gross, foreign.raw["original_amount"], foreign.raw["original_currency"]) == (
        125_000,
        115_000,
        "EUR",
    )
    assert foreign.payout_id is None
    assert (payout.type, payout.payout_id, payout.net) == (
        ReportLineType.PAYOUT,
        "po_1QxYz2",
        -15_390,
    )


async def test_stripe_itemized_report_carries_payment_intent_and_payrail_id() -> None:
    lines = by_id(await read("stripe", FIXTURES / "stripe_itemized.csv"))
    charge, dispute, fee = lines["txn_3QaB1"], lines["txn_3QaB3"], lines["txn_3QaB5"]
    assert (charge.gateway_payment_id, charge.payment_id, charge.payout_id) == (
        "pi_3QaB1",
        "pay_01J9",
        "po_1QxYz2",
    )
    assert (dispute.type, dispute.gateway_payment_id) == (ReportLineType.DISPUTE, "pi_3Qa90")
    assert (fee.type, fee.gross) == (ReportLineType.FEE, -250)


async def test_razorpay_recon_export_keeps_tax_inside_the_fee_and_sums_each_settlement() -> None:
    lines = by_id(await read("razorpay", FIXTURES / "razorpay_recon.csv"))
    payment = lines["pay_NkV7tq0xSJ0aJ9"]
    assert (payment.gross, payment.fee, payment.tax, payment.net) == (
        1_000_000,
        23_600,
        3_600,
        976_400,
    )
    assert (payment.gateway_payment_id, payment.payment_id) == ("order_NkV7aBcD123456", "pay_01J9")
    assert payment.created_at == datetime(2025, 3, 3, 5, 32, 41, tzinfo=UTC)  # 11:02:41 in India
    assert lines["rfnd_NkVx9y8z7w6v5u"].type is ReportLineType.REFUND
    dispute = lines["adj_NkVz1y2x3w4v5u"]
    assert (dispute.type, dispute.net, dispute.raw["source_id"]) == (
        ReportLineType.DISPUTE,
        -200_000,
        "disp_NkVz0a1b2c3d4e",
    )
    settlement = lines["setl_NkW1a2b3c4d5e6"]
    assert (settlement.type, settlement.net) == (
        ReportLineType.PAYOUT,
        -(976_400 - 50_000 - 200_000),
    )
    assert settlement.raw["settlement_reference"] == "UTR0503HDFC000123"


async def test_paypal_settlement_report_reads_unsigned_minor_units_and_links_the_withdrawal() -> (
    None
):
    lines = by_id(await read("paypal", FIXTURES / "paypal_stl.csv"))
    payment, refund, withdrawal = (
        lines["5RW81234AB567890C"],
        lines["9XK55522CD334455E"],
        lines["1AB23456CD789012E"],
    )
    assert (payment.type, payment.gross, payment.fee, payment.net, payment.payment_id) == (
        ReportLineType.CHARGE,
        2_500,
        103,
        2_397,
        "pay_01J9",
    )
    assert (refund.type, refund.gross, refund.fee, refund.net) == (
        ReportLineType.REFUND,
        -500,
        -20,
        -480,
    )
    assert refund.gateway_payment_id == "5RW81234AB567890C"  # the capture it refunds
    assert (withdrawal.type, withdrawal.net) == (ReportLineType.PAYOUT, -1_917)
    assert withdrawal.raw["settlement_reference"] == "BRF-0305-7781"
    # PayPal links nothing; first-in first-out the withdrawal took both lines
    assert payment.payout_id == refund.payout_id == "1AB23456CD789012E"
    assert payment.created_at == datetime(2025, 3, 5, 18, 15, tzinfo=UTC)


async def test_adyen_settlement_details_in_the_net_currency_with_fx_kept() -> None:
    lines = await read("adyen", FIXTURES / "adyen")  # a folder: every settlement details CSV in it
    settled, foreign, refund, payout = lines
    assert (settled.type, settled.gross, settled.fee, settled.net) == (
        ReportLineType.CHARGE,
        2_500,
        53,
        2_447,
    )
    assert (settled.gateway_payment_id, settled.payment_id) == ("8815788112345678", "pay_01J9")
    assert settled.created_at == datetime(2025, 3, 3, 9, 15, tzinfo=UTC)  # CET
    assert (foreign.gross, foreign.raw["original_amount"], foreign.raw["original_currency"]) == (
        910,
        1_000,
        "USD",
    )
    assert (refund.type, refund.net, refund.raw["source_id"]) == (
        ReportLineType.REFUND,
        -500,
        "8835788199999999",
    )
    assert (payout.type, payout.net) == (ReportLineType.PAYOUT, -2_830)
    assert settled.payout_id == payout.payout_id == "PayrailEU:batch-118"


async def test_report_lines_become_engine_frames() -> None:
    frame = report_lines_frame(await read("razorpay", FIXTURES / "razorpay_recon.csv"))
    assert frame["type"].to_list() == ["charge", "refund", "dispute", "payout"]
    assert frame.filter(frame["type"] == "payout")["settlement_reference"].to_list() == [
        "UTR0503HDFC000123"
    ]
    assert frame["tax"].sum() == 3_600


@pytest.mark.parametrize(
    ("gateway", "fixture", "old", "new", "message"),
    [
        (
            "stripe",
            "stripe_balance_export.csv",
            "-5.00,0.00",
            "-5.0O,0.00",
            "line 3: gross '-5.0O'",
        ),
        (
            "razorpay",
            "razorpay_recon.csv",
            "04/03/2025 16:40:00",
            "2025-13-40",
            "line 3: created_at",
        ),
        ("paypal", "paypal_stl.csv", '"DR",500', '"XX",500', "line 6: Transaction Debit or Credit"),
        (
            "adyen",
            "adyen/adyen_settlement_detail_report_batch_118.csv",
            ",8.83,",
            ",8.8x,",
            "line 3: Net Credit (NC)",
        ),
    ],
)
async def test_a_bad_report_file_names_its_line(
    tmp_path: Path, gateway: str, fixture: str, old: str, new: str, message: str
) -> None:
    broken = tmp_path / Path(fixture).name
    broken.write_text((FIXTURES / fixture).read_text().replace(old, new, 1))
    with pytest.raises(GatewayError, match=re.escape(message)):
        await read(gateway, broken)


def test_adyen_needs_its_report_files() -> None:
    with pytest.raises(GatewayError, match="report_file"):
        get("adyen").report_fetcher(GatewayAccountConfig())
