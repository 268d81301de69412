"""Whatever the data, every unit of money is in exactly one row.

The waterfall sums by construction (UNEXPLAINED is the remainder), so the real property is
stronger: the rows of each stage add up to the difference between that stage's checkpoints,
and no UNEXPLAINED money is left without a row behind it. Hypothesis throws messy months at the
engine - duplicates, foreign currencies, failed and re-paid payouts, payouts split and merged on
the bank side, lines outside the period - and checks both.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import polars as pl
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reconciler.domain import FeeSchedule, Period, ReconcileParams, Tolerances
from reconciler.engine import Inputs, reconcile
from reconciler.frames import (
    BANK_LINES,
    GATEWAY_LINES,
    LEDGER_DISPUTES,
    LEDGER_PAYMENTS,
    LEDGER_REFUNDS,
    records_frame,
)

PERIOD = Period(date(2025, 3, 1), date(2025, 4, 1))
STATUSES = ["succeeded", "refunded", "failed", "pending", "disputed", "won"]
LINE_TYPES = ["charge", "refund", "dispute", "dispute_reversal", "fee", "adjustment", "other"]

days = st.integers(min_value=-10, max_value=40)
amounts = st.integers(min_value=1, max_value=50_000)


def moment(offset: int) -> datetime:
    return datetime(2025, 3, 1, 12, tzinfo=UTC) + timedelta(days=offset)


@st.composite
def months(draw: st.DrawFn) -> dict[str, Any]:
    n = draw(st.integers(min_value=0, max_value=12))
    payments, refunds, disputes, lines, bank = [], [], [], [], []
    payout_ids = [f"po_{k}" for k in range(draw(st.integers(min_value=0, max_value=5)))]
    for i in range(n):
        amount = draw(amounts)
        currency = draw(st.sampled_from(["USD", "USD", "USD", "EUR"]))
        day = draw(days)
        payments.append(
            {
                "payment_id": f"p{i}",
                "gateway": "stripe",
                "gateway_payment_id": f"pi_{draw(st.integers(0, n))}",
                "status": draw(st.sampled_from(STATUSES)),
                "amount": amount,
                "currency": currency,
                "occurred_at": moment(day),
            }
        )
        if draw(st.booleans()):
            refunds.append(
                {
                    "refund_id": f"r{i}",
                    "payment_id": f"p{i}",
                    "gateway_refund_id": draw(st.sampled_from([None, f"re_{i}"])),
                    "amount": draw(st.integers(1, amount)),
                    "currency": currency,
                    "occurred_at": moment(day + draw(st.integers(0, 5))),
                }
            )
        if draw(st.integers(0, 4)) == 0:
            disputes.append(
                {
                    "dispute_id": f"d{i}",
                    "payment_id": f"p{i}",
                    "gateway_dispute_id": f"dp_{i}",
                    "status": draw(st.sampled_from(["open", "won", "lost"])),
                    "amount": amount,
                    "currency": currency,
                    "opened_at": moment(day + 3),
                    "closed_at": moment(day + 9),
                }
            )
    for j in range(draw(st.integers(min_value=0, max_value=16))):
        gross = draw(st.integers(min_value=-30_000, max_value=60_000))
        fee = draw(st.integers(min_value=0, max_value=900))
        tax = draw(st.integers(min_value=0, max_value=fee))
        original = draw(st.sampled_from([None, "EUR"]))
        lines.append(
            {
                "gateway": "stripe",
                "line_id": f"txn_{j}",
                "type": draw(st.sampled_from(LINE_TYPES)),
                "gross": gross,
                "fee": fee,
                "tax": tax,
                "net": gross - fee,
                "currency": draw(st.sampled_from(["USD", "USD", "USD", "EUR"])),
                "created_at": moment(draw(days)),
                "gateway_payment_id": f"pi_{draw(st.integers(0, max(n, 1)))}",
                "source_id": draw(st.sampled_from([None, f"re_{j}", f"dp_{j}", f"re_{j % 3}"])),
                "payout_id": draw(st.sampled_from([None, *payout_ids])),
                "international": draw(st.booleans()),
                "original_amount": draw(st.integers(1, 40_000)) if original else None,
                "original_currency": original,
            }
        )
    for k, payout_id in enumerate(payout_ids):
        amount = draw(st.integers(min_value=-5_000, max_value=90_000))
        arrival = draw(days)
        lines.append(
            {
                "gateway": "stripe",
                "line_id": f"txn_po_{k}",
                "type": "payout",
                "gross": -amount,
                "fee": 0,
                "net": -amount,
                "currency": "USD",
                "created_at": moment(arrival - 2),
                "available_on": moment(arrival),
                "payout_id": payout_id,
                "settlement_reference": f"TRACE{k:04d}",
            }
        )
        if draw(st.integers(0, 3)) == 0:
            lines.append(
                {
                    "gateway": "stripe",
                    "line_id": f"txn_pf_{k}",
                    "type": "payout_failure",
                    "gross": amount,
                    "fee": 0,
                    "net": amount,
                    "currency": "USD",
                    "created_at": moment(arrival + 1),
                    "source_id": payout_id,
                    "payout_id": draw(st.sampled_from([None, *payout_ids])),
                }
            )
    for b in range(draw(st.integers(min_value=0, max_value=8))):
        refs = draw(st.lists(st.sampled_from([*payout_ids, "TRACE0001", "junk"]), max_size=2))
        bank.append(
            {
                "statement_id": "S1",
                "line_id": f"b{b}",
                "booking_date": (moment(draw(days))).date(),
                "amount": draw(st.integers(min_value=-2_000, max_value=90_000)),
                "currency": draw(st.sampled_from(["USD", "USD", "EUR"])),
                "references": refs,
                "description": draw(st.sampled_from(["", "bank charges", "STRIPE PAYOUT po_1"])),
                "bank_code": draw(st.sampled_from([None, "CHRG"])),
            }
        )
    return {
        "payments": payments,
        "refunds": refunds,
        "disputes": disputes,
        "lines": lines,
        "bank": bank,
        "rates": draw(st.sampled_from([{}, {"EUR": Decimal("1.0834")}])),
        "schedule": draw(st.sampled_from([{}, {"stripe": FeeSchedule(percent_bps=290, fixed=30)}])),
        "as_of": date(2025, 4, draw(st.integers(1, 30))),
    }


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(months())
def test_rows_account_for_every_unit_of_money(month: dict[str, Any]) -> None:
    result = reconcile(
        Inputs(
            payments=records_frame(month["payments"], LEDGER_PAYMENTS),
            refunds=records_frame(month["refunds"], LEDGER_REFUNDS),
            disputes=records_frame(month["disputes"], LEDGER_DISPUTES),
            gateway_lines=records_frame(month["lines"], GATEWAY_LINES),
            bank_lines=records_frame(month["bank"], BANK_LINES),
        ),
        ReconcileParams(
            period=PERIOD,
            currency="USD",
            as_of=month["as_of"],
            tolerances=Tolerances(amount_abs=50, amount_bps=10, date_window_days=2),
            fee_schedules=month["schedule"],
            fx_rates=month["rates"],
        ),
    )
    summary, waterfall = result.summary, result.waterfall
    by_stage = dict(result.rows.group_by("stage").agg(pl.col("amount").sum()).iter_rows())
    assert summary.ledger_expected + by_stage.get("ledger-gateway", 0) + by_stage.get(
        "fees", 0
    ) == (summary.gateway_net)
    assert summary.gateway_net + by_stage.get("settlement", 0) == summary.payouts_landed
    assert summary.payouts_landed + by_stage.get("bank", 0) == summary.bank_received
    assert waterfall.start + sum(step.amount for step in waterfall.steps) == waterfall.end
    assert result.unexplained_unlinked == 0
