"""The seed's question, answered line by line.

"We got 98,120 in the bank, but the system shows 97,950. Why?" - a January at Razorpay in
INR: 2 % fees plus 18 % GST on them, one refund payrail recorded and one it did not, an
adjustment credit payrail never heard of, a December settlement that reached the bank on
2 January, a payment of the 31st whose settlement lands on 3 February, one settlement the bank
shows without any reference, and the bank's own charge.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

import polars as pl
import pytest

from reconciler.domain import (
    Cause,
    FeeSchedule,
    Item,
    Period,
    ReconcileParams,
    ReconciliationResult,
)
from reconciler.engine import Inputs, reconcile
from reconciler.frames import (
    BANK_LINES,
    GATEWAY_LINES,
    LEDGER_PAYMENTS,
    LEDGER_REFUNDS,
    records_frame,
)
from reconciler.report import RunReport, to_csv, to_html, to_json

INR = "INR"


def at(day: int, month: int = 1, hour: int = 10) -> datetime:
    return datetime(2025, month, day, hour, tzinfo=UTC)


def rupees(amount: str) -> int:
    from payrail.money import Money

    return Money.from_major(amount, INR).amount


def charge(n: int, amount: str, day: int, payout: str) -> dict[str, object]:
    gross = rupees(amount)
    pre_tax = gross * 2 // 100
    tax = pre_tax * 18 // 100
    return {
        "gateway": "razorpay",
        "line_id": f"pay_R{n}",
        "type": "charge",
        "gross": gross,
        "fee": pre_tax + tax,
        "tax": tax,
        "net": gross - pre_tax - tax,
        "currency": INR,
        "created_at": at(day),
        "gateway_payment_id": f"pay_R{n}",
        "payment_id": f"p{n}",
        "payout_id": payout,
    }


def line(
    line_id: str, kind: str, amount: str, day: int, payout: str, **extra: object
) -> dict[str, object]:
    gross = rupees(amount)
    return {
        "gateway": "razorpay",
        "line_id": line_id,
        "type": kind,
        "gross": gross,
        "fee": 0,
        "net": gross,
        "currency": INR,
        "created_at": at(day),
        "payout_id": payout,
        **extra,
    }


def payout(
    setl: str, amount: str, created: datetime, arrival: datetime, utr: str
) -> dict[str, object]:
    net = -rupees(amount)
    return {
        "gateway": "razorpay",
        "line_id": f"{setl}-payout",
        "type": "payout",
        "gross": net,
        "fee": 0,
        "net": net,
        "currency": INR,
        "created_at": created,
        "available_on": arrival,
        "payout_id": setl,
        "settlement_reference": utr,
    }


def bank(
    line_id: str, day: date, amount: str, *refs: str, description: str = "", code: str = ""
) -> dict[str, object]:
    return {
        "statement_id": "HDFC-2025-01",
        "line_id": line_id,
        "booking_date": day,
        "value_date": day,
        "amount": rupees(amount),
        "currency": INR,
        "references": list(refs),
        "description": description,
        "bank_code": code or None,
    }


@pytest.fixture(scope="module")
def january() -> ReconciliationResult:
    payments = records_frame(
        [
            {
                "payment_id": f"p{n}",
                "gateway": "razorpay",
                "gateway_payment_id": f"pay_R{n}",
                "status": status,
                "amount": rupees(amount),
                "currency": INR,
                "user_id": f"u{n}",
                "sku": "pro-monthly",
                "occurred_at": at(day),
            }
            for n, amount, day, status in [
                (1, "40000.00", 6, "partially_refunded"),  # its 500 refund is not in payrail
                (2, "35000.00", 14, "partially_refunded"),
                (3, "23750.00", 22, "succeeded"),
                (4, "1250.00", 31, "succeeded"),
            ]
        ],
        LEDGER_PAYMENTS,
    )
    refunds = records_frame(
        [
            {
                "refund_id": "r1",
                "payment_id": "p2",
                "gateway_refund_id": "rfnd_R1",
                "amount": rupees("2050.00"),
                "currency": INR,
                "occurred_at": at(20),
            }
        ],
        LEDGER_REFUNDS,
    )
    lines = records_frame(
        [
            payout("setl_DEC", "4200.00", datetime(2024, 12, 31, 3, tzinfo=UTC), at(2), "UTR0001"),
            charge(1, "40000.00", 6, "setl_A"),
            payout("setl_A", "39056.00", at(7), at(8), "UTR0002"),
            charge(2, "35000.00", 14, "setl_B"),
            payout("setl_B", "34174.00", at(15), at(16), "UTR0003"),
            line(
                "rfnd_R1",
                "refund",
                "-2050.00",
                20,
                "setl_C",
                source_id="rfnd_R1",
                gateway_payment_id="pay_R2",
            ),
            charge(3, "23750.00", 22, "setl_C"),
            line(
                "rfnd_R2",
                "refund",
                "-500.00",
                25,
                "setl_C",
                source_id="rfnd_R2",
                gateway_payment_id="pay_R1",
            ),
            line("adj_R1", "adjustment", "75.50", 28, "setl_C", reporting_category="fee_credit"),
            payout("setl_C", "20715.00", at(28), at(29), "UTR0004"),
            charge(4, "1250.00", 31, "setl_D"),
            payout("setl_D", "1220.50", at(31, hour=20), at(3, month=2), "UTR0005"),
        ],
        GATEWAY_LINES,
    )
    statement = records_frame(
        [
            bank("b1", date(2025, 1, 2), "4200.00", "UTR0001", description="RAZORPAY SETTLEMENT"),
            bank("b2", date(2025, 1, 8), "39056.00", description="NEFT RAZORPAY UTR0002 SETTL"),
            bank("b3", date(2025, 1, 17), "34174.00", description="RAZORPAY SOFTWARE PVT LTD"),
            bank("b4", date(2025, 1, 29), "20715.00", "UTR0004"),
            bank("b5", date(2025, 1, 31), "-25.00", description="SMS ALERT CHARGES", code="CHRG"),
        ],
        BANK_LINES,
    )
    params = ReconcileParams(
        period=Period.month(2025, 1),
        currency=INR,
        as_of=date(2025, 2, 10),
        fee_schedules={"razorpay": FeeSchedule(percent_bps=200)},
        bank_covered_until=date(2025, 1, 31),
    )
    return reconcile(
        Inputs(payments=payments, refunds=refunds, gateway_lines=lines, bank_lines=statement),
        params,
    )


def steps(result: ReconciliationResult) -> dict[str, int]:
    return {step.cause: step.amount for step in result.waterfall.steps}


def refs(result: ReconciliationResult, cause: str) -> list[tuple[str, int]]:
    rows = result.rows.filter(pl.col("cause") == cause).sort("ref")
    return list(zip(rows["ref"].to_list(), rows["amount"].to_list(), strict=True))


def test_the_system_shows_97950_and_the_bank_98120(january: ReconciliationResult) -> None:
    assert january.waterfall.start == rupees("97950.00")
    assert january.waterfall.end == rupees("98120.00")
    assert january.summary.ledger_captured == rupees("100000.00")
    assert january.summary.ledger_refunded == rupees("2050.00")


def test_the_170_difference_is_explained_step_by_step(january: ReconciliationResult) -> None:
    assert steps(january) == {
        Cause.MISSING_IN_LEDGER: rupees("75.50"),
        Cause.REFUND_NOT_RECORDED: rupees("-500.00"),
        Item.GATEWAY_FEES: rupees("-2000.00"),
        Item.FEE_TAX: rupees("-360.00"),
        Item.PRIOR_PERIOD_SETTLED: rupees("4200.00"),
        Cause.TIMING_UNSETTLED: rupees("-1220.50"),
        Cause.BANK_CHARGE: rupees("-25.00"),
        Cause.UNEXPLAINED: 0,
    }
    assert sum(steps(january).values()) == rupees("170.00")
    assert january.unexplained_unlinked == 0


def test_each_step_names_the_rows_behind_it(january: ReconciliationResult) -> None:
    assert refs(january, Cause.MISSING_IN_LEDGER) == [("adj_R1", rupees("75.50"))]
    assert refs(january, Cause.REFUND_NOT_RECORDED) == [("rfnd_R2", rupees("-500.00"))]
    assert refs(january, Item.PRIOR_PERIOD_SETTLED) == [("setl_DEC", rupees("4200.00"))]
    assert refs(january, Cause.TIMING_UNSETTLED) == [("setl_D", rupees("-1220.50"))]
    assert refs(january, Cause.BANK_CHARGE) == [("b5", rupees("-25.00"))]
    timing = january.rows.filter(pl.col("cause") == Cause.TIMING_UNSETTLED).row(0, named=True)
    assert timing["gateway_line_ids"] == ["pay_R4"]
    assert timing["expected_by"] == date(2025, 2, 5)
    unrecorded = january.rows.filter(pl.col("cause") == Cause.REFUND_NOT_RECORDED).row(
        0, named=True
    )
    assert unrecorded["payment_id"] == "p1"
    assert unrecorded["gateway_line_ids"] == ["rfnd_R2"]
    fees = january.rows.filter(pl.col("cause") == Item.GATEWAY_FEES).row(0, named=True)
    assert fees["line_count"] == 4


def test_every_settlement_is_matched_to_its_bank_line(january: ReconciliationResult) -> None:
    matches = {
        row["payout_id"]: (row["bank_line_id"], row["method"])
        for row in january.payout_matches.iter_rows(named=True)
    }
    assert matches == {
        "setl_DEC": ("b1", "reference"),
        "setl_A": ("b2", "reference"),  # the UTR is only in the description
        "setl_B": ("b3", "amount_date"),  # no reference: same amount a business day later
        "setl_C": ("b4", "reference"),
    }
    assert january.summary.payouts_landed == rupees("98145.00")
    assert january.discrepancies["cause"].to_list().count(Cause.UNEXPLAINED) == 0


def test_the_report_files_tell_the_same_story(january: ReconciliationResult) -> None:
    report = RunReport.from_result(
        january, {"period": "2025-01", "currency": INR, "gateways": ["razorpay"]}
    )
    page = to_html(report)
    assert page.count("<svg") == 1
    for text in (
        "97,950.00 INR",
        "98,120.00 INR",
        "170.00 INR",
        "-1,220.50 INR",
        "setl_D",
        "rfnd_R2",
    ):
        assert text in page
    rows = to_csv(report).splitlines()
    assert rows[0].startswith("cause,kind,stage,amount,amount_major,currency,ref")
    assert "TIMING_UNSETTLED,discrepancy,settlement,-122050,-1220.50,INR,setl_D" in "\n".join(rows)
    body = to_json(report)
    assert body["waterfall"]["difference"] == rupees("170.00")
    assert body["discrepancies"]["by_cause"]["REFUND_NOT_RECORDED"] == {
        "rows": 1,
        "amount": -50_000,
    }
