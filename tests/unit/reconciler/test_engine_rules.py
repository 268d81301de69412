"""One rule of the engine per test, on the smallest month that shows it."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import polars as pl
import pytest

from reconciler.domain import (
    Cause,
    Item,
    Period,
    ReconcileParams,
    ReconciliationError,
    ReconciliationResult,
    SettlementWindow,
    Tolerances,
)
from reconciler.engine import Inputs, reconcile
from reconciler.frames import (
    BANK_LINES,
    GATEWAY_LINES,
    LEDGER_PAYMENTS,
    LEDGER_REFUNDS,
    records_frame,
)

MARCH = Period.month(2025, 3)


def at(day: int, month: int = 3, hour: int = 12) -> datetime:
    return datetime(2025, month, day, hour, tzinfo=UTC)


@dataclass
class Month:
    """A month under construction: ledger, gateway lines and bank lines as records."""

    payments: list[dict[str, Any]] = field(default_factory=list)
    refunds: list[dict[str, Any]] = field(default_factory=list)
    lines: list[dict[str, Any]] = field(default_factory=list)
    bank: list[dict[str, Any]] = field(default_factory=list)

    def paid(
        self,
        pid: str,
        amount: int,
        day: int,
        *,
        gpid: str | None = None,
        status: str = "succeeded",
        currency: str = "USD",
        gateway: str = "stripe",
    ) -> None:
        self.payments.append(
            {
                "payment_id": pid,
                "gateway": gateway,
                "gateway_payment_id": gpid or f"pi_{pid}",
                "status": status,
                "amount": amount,
                "currency": currency,
                "occurred_at": at(day),
            }
        )

    def line(
        self,
        line_id: str,
        kind: str,
        gross: int,
        day: int,
        *,
        fee: int = 0,
        month: int = 3,
        **extra: Any,
    ) -> None:
        self.lines.append(
            {
                "gateway": extra.pop("gateway", "stripe"),
                "line_id": line_id,
                "type": kind,
                "gross": gross,
                "fee": fee,
                "net": gross - fee,
                "currency": extra.pop("currency", "USD"),
                "created_at": at(day, month),
                **extra,
            }
        )

    def payout(self, payout_id: str, amount: int, arrival: date, **extra: Any) -> None:
        self.lines.append(
            {
                "gateway": "stripe",
                "line_id": f"txn_{payout_id}",
                "type": "payout",
                "gross": -amount,
                "fee": 0,
                "net": -amount,
                "currency": "USD",
                "created_at": datetime(
                    arrival.year, arrival.month, max(arrival.day - 2, 1), tzinfo=UTC
                ),
                "available_on": datetime(arrival.year, arrival.month, arrival.day, tzinfo=UTC),
                "payout_id": payout_id,
                **extra,
            }
        )

    def credit(
        self,
        line_id: str,
        amount: int,
        day: date,
        *refs: str,
        description: str = "",
        code: str | None = None,
    ) -> None:
        self.bank.append(
            {
                "statement_id": "S",
                "line_id": line_id,
                "booking_date": day,
                "amount": amount,
                "currency": "USD",
                "references": list(refs),
                "description": description,
                "bank_code": code,
            }
        )

    def run(self, **params: Any) -> ReconciliationResult:
        defaults: dict[str, Any] = {"period": MARCH, "currency": "USD", "as_of": date(2025, 4, 10)}
        return reconcile(
            Inputs(
                payments=records_frame(self.payments, LEDGER_PAYMENTS),
                refunds=records_frame(self.refunds, LEDGER_REFUNDS),
                gateway_lines=records_frame(self.lines, GATEWAY_LINES),
                bank_lines=records_frame(self.bank, BANK_LINES),
            ),
            ReconcileParams(**{**defaults, **params}),
        )


def found(result: ReconciliationResult) -> list[tuple[str, str, int]]:
    rows = result.rows.filter(pl.col("kind") == "discrepancy").sort("cause", "ref")
    return list(zip(rows["cause"], rows["ref"], rows["amount"], strict=True))


def test_a_clean_month_has_no_discrepancies_and_nothing_unexplained() -> None:
    m = Month()
    m.paid("p1", 10_000, 3)
    m.line("ch_1", "charge", 10_000, 3, fee=320, gateway_payment_id="pi_p1", payout_id="po_1")
    m.payout("po_1", 9_680, date(2025, 3, 5), settlement_reference="TRACE1")
    m.credit("b1", 9_680, date(2025, 3, 5), "TRACE1")
    result = m.run()
    assert found(result) == []
    assert result.waterfall.unexplained == 0
    assert [(s.cause, s.amount) for s in result.waterfall.steps] == [
        (Item.GATEWAY_FEES, -320),
        (Cause.UNEXPLAINED, 0),
    ]


def test_gateways_that_keep_their_own_ids_match_on_payrails_payment_id() -> None:
    """PayPal reports capture ids and Adyen pspReferences; payrail stores the order or session
    id. The payrail id the gateway carries in its metadata pairs them - and still tells a
    second capture of the same payment (DUPLICATE) and a capture of a payment payrail thinks
    failed (STATUS_MISMATCH)."""
    m = Month()
    m.paid("p1", 2_500, 3, gpid="ORDER-1", gateway="paypal")
    m.paid("p2", 1_000, 3, gpid="ORDER-2", gateway="paypal", status="failed")
    m.line(
        "CAP-1", "charge", 2_500, 3, gateway="paypal", gateway_payment_id="CAP-1", payment_id="p1"
    )
    m.line(
        "CAP-1b", "charge", 2_500, 4, gateway="paypal", gateway_payment_id="CAP-1b", payment_id="p1"
    )
    m.line(
        "CAP-2", "charge", 1_000, 3, gateway="paypal", gateway_payment_id="CAP-2", payment_id="p2"
    )
    result = m.run()
    assert result.summary.matched_ledger_gateway == 1
    causes = {(cause, ref) for cause, ref, _ in found(result)}
    assert (Cause.DUPLICATE, "CAP-1b") in causes
    assert (Cause.STATUS_MISMATCH, "CAP-2") in causes
    assert not any(cause == Cause.MISSING_AT_GATEWAY for cause, _ in causes)


@pytest.mark.parametrize(
    ("international", "as_of", "expected"),
    [
        (False, date(2025, 4, 1), Cause.TIMING_UNSETTLED),  # due T+2 = 1 April: not late yet
        (False, date(2025, 4, 2), Cause.MISSING_IN_BANK),  # the day after: it is missing
        (True, date(2025, 4, 2), Cause.TIMING_UNSETTLED),  # international: T+7 = 8 April
        (True, date(2025, 4, 9), Cause.MISSING_IN_BANK),
    ],
)
def test_unsettled_money_ages_into_missing_past_its_settlement_window(
    international: bool, as_of: date, expected: str
) -> None:
    m = Month()
    m.paid("p1", 5_000, 28)  # a Friday
    m.line("ch_1", "charge", 5_000, 28, gateway_payment_id="pi_p1", international=international)
    result = m.run(as_of=as_of)
    [(cause, ref, amount)] = found(result)
    assert (cause, ref, amount) == (expected, "ch_1", -5_000)


def test_aging_never_looks_past_the_last_imported_bank_day() -> None:
    m = Month()
    m.paid("p1", 5_000, 3)
    m.line("ch_1", "charge", 5_000, 3, gateway_payment_id="pi_p1")
    # run in May, but the statements stop on 4 March: the bank may still show it
    [(cause, _, _)] = found(m.run(as_of=date(2025, 5, 1), bank_covered_until=date(2025, 3, 4)))
    assert cause == Cause.TIMING_UNSETTLED


def test_holidays_extend_the_settlement_window() -> None:
    m = Month()
    m.paid("p1", 5_000, 28)
    m.line("ch_1", "charge", 5_000, 28, gateway_payment_id="pi_p1")
    window = SettlementWindow(holidays=(date(2025, 3, 31),))
    [(cause, _, _)] = found(m.run(as_of=date(2025, 4, 2), settlement=window))
    assert cause == Cause.TIMING_UNSETTLED  # due 2 April with the holiday, not 1 April


def test_one_bank_credit_for_several_payouts_matches_them_all_by_reference() -> None:
    m = Month()
    for n, amount in ((1, 4_000), (2, 6_000)):
        m.paid(f"p{n}", amount, 3)
        m.line(f"ch_{n}", "charge", amount, 3, gateway_payment_id=f"pi_p{n}", payout_id=f"po_{n}")
        m.payout(f"po_{n}", amount, date(2025, 3, 5), settlement_reference=f"HDFCR5202503050{n}")
    m.credit(
        "b1", 9_975, date(2025, 3, 5), description="NEFT HDFCR52025030501 HDFCR52025030502"
    )  # 25 kept by the bank
    result = m.run()
    assert sorted(result.payout_matches["payout_id"]) == ["po_1", "po_2"]
    assert set(result.payout_matches["bank_line_id"]) == {"b1"}
    assert found(result) == [(Cause.BANK_CHARGE, "b1", -25)]


@pytest.mark.parametrize(
    ("booked", "amount", "tolerances", "matched"),
    [
        (date(2025, 3, 7), 9_990, Tolerances(amount_abs=10, date_window_days=2), True),
        (date(2025, 3, 7), 9_989, Tolerances(amount_abs=10, date_window_days=2), False),
        (date(2025, 3, 7), 9_950, Tolerances(amount_bps=50, date_window_days=2), True),  # 0.5 %
        # Wed 5 -> Mon 10 March is three business days
        (date(2025, 3, 10), 10_000, Tolerances(date_window_days=3), True),
        (date(2025, 3, 10), 10_000, Tolerances(date_window_days=2), False),
    ],
)
def test_without_references_amount_and_business_day_tolerances_decide(
    booked: date, amount: int, tolerances: Tolerances, matched: bool
) -> None:
    m = Month()
    m.paid("p1", 10_000, 3)
    m.line("ch_1", "charge", 10_000, 3, gateway_payment_id="pi_p1", payout_id="po_1")
    m.payout("po_1", 10_000, date(2025, 3, 5))
    m.credit("b1", amount, booked, description="ACH CREDIT")
    result = m.run(tolerances=tolerances)
    assert (result.payout_matches.height == 1) is matched
    assert result.unexplained_unlinked == 0


def test_fx_is_split_into_the_amount_payrail_got_wrong_and_the_conversion() -> None:
    m = Month()
    m.paid("p1", 10_000, 3, currency="EUR")
    m.line(
        "ch_1",
        "charge",
        10_850,
        3,
        gateway_payment_id="pi_p1",
        original_amount=10_100,
        original_currency="EUR",
    )
    result = m.run(fx_rates={"EUR": Decimal("1.08")}, as_of=date(2025, 3, 4))
    assert result.waterfall.start == 10_800  # payrail's EUR 100.00 at the reference rate
    assert [(c, a) for c, _, a in found(result) if c != Cause.TIMING_UNSETTLED] == [
        (Cause.AMOUNT_MISMATCH, 108),  # EUR 1.00 more captured than payrail recorded
        (Cause.FX_DIFFERENCE, -58),  # the gateway's rate under the reference rate
    ]


def test_without_a_reference_rate_the_gateways_own_rate_is_used() -> None:
    m = Month()
    m.paid("p1", 10_000, 3, currency="EUR")
    m.line(
        "ch_1",
        "charge",
        10_850,
        3,
        gateway_payment_id="pi_p1",
        original_amount=10_000,
        original_currency="EUR",
    )
    result = m.run(as_of=date(2025, 3, 4))
    assert result.waterfall.start == 10_850
    assert [c for c, _, _ in found(result)] == [Cause.TIMING_UNSETTLED]


def test_a_failed_payout_repaid_within_the_period_is_no_discrepancy() -> None:
    m = Month()
    m.paid("p1", 7_000, 3)
    m.line("ch_1", "charge", 7_000, 3, gateway_payment_id="pi_p1", payout_id="po_1")
    m.payout("po_1", 7_000, date(2025, 3, 5))
    m.line("pf_1", "payout_failure", 7_000, 6, source_id="po_1", payout_id="po_2")
    m.payout("po_2", 7_000, date(2025, 3, 10), settlement_reference="TR2")
    m.credit("b2", 7_000, date(2025, 3, 10), "TR2")
    result = m.run()
    assert found(result) == []
    assert result.summary.payouts_landed == result.summary.bank_received == 7_000


def test_a_failed_payout_not_repaid_is_payout_failed_with_its_lines() -> None:
    m = Month()
    m.paid("p1", 7_000, 3)
    m.line("ch_1", "charge", 7_000, 3, gateway_payment_id="pi_p1", payout_id="po_1")
    m.payout("po_1", 7_000, date(2025, 3, 5))
    m.line("pf_1", "payout_failure", 7_000, 6, source_id="po_1")
    result = m.run()
    assert found(result) == [(Cause.PAYOUT_FAILED, "po_1", -7_000)]
    row = result.rows.filter(pl.col("cause") == Cause.PAYOUT_FAILED).row(0, named=True)
    assert row["gateway_line_ids"] == ["ch_1"]


def test_entries_dated_in_different_periods_are_a_cut_off_not_a_discrepancy() -> None:
    m = Month()
    m.paid("p1", 3_000, 31)
    m.line("ch_1", "charge", 3_000, 1, month=4, gateway_payment_id="pi_p1")
    result = m.run()
    assert found(result) == []
    assert result.waterfall.step(Item.PERIOD_CUTOFF) is not None
    assert result.rows.filter(pl.col("cause") == Item.PERIOD_CUTOFF)["amount"].to_list() == [-3_000]


def test_a_refund_payrail_recorded_without_the_gateways_id_still_matches_on_amount() -> None:
    m = Month()
    m.paid("p1", 3_000, 3, status="partially_refunded")
    m.refunds.append(
        {
            "refund_id": "r1",
            "payment_id": "p1",
            "amount": 1_000,
            "currency": "USD",
            "occurred_at": at(4),
        }
    )
    m.line("ch_1", "charge", 3_000, 3, gateway_payment_id="pi_p1", payout_id="po_1")
    m.line(
        "re_1", "refund", -1_000, 4, gateway_payment_id="pi_p1", source_id="re_1", payout_id="po_1"
    )
    m.payout("po_1", 2_000, date(2025, 3, 6), settlement_reference="T")
    m.credit("b1", 2_000, date(2025, 3, 6), "T")
    assert found(m.run()) == []


def test_a_bank_line_seen_twice_is_a_duplicate() -> None:
    m = Month()
    m.paid("p1", 3_000, 3)
    m.line("ch_1", "charge", 3_000, 3, gateway_payment_id="pi_p1", payout_id="po_1")
    m.payout("po_1", 3_000, date(2025, 3, 5), settlement_reference="T")
    m.credit("b1", 3_000, date(2025, 3, 5), "T")
    m.credit("b1-again", 3_000, date(2025, 3, 5), "T")
    assert found(m.run()) == [(Cause.DUPLICATE, "b1-again", 3_000)]


def test_money_as_floats_is_refused() -> None:
    frame = records_frame(
        [
            {
                "payment_id": "p1",
                "gateway": "stripe",
                "status": "succeeded",
                "amount": 1,
                "currency": "USD",
                "occurred_at": at(3),
            }
        ],
        LEDGER_PAYMENTS,
    ).with_columns(pl.col("amount").cast(pl.Float64))
    with pytest.raises(ReconciliationError, match="money must be integer minor units"):
        reconcile(
            Inputs(
                payments=frame, gateway_lines=GATEWAY_LINES.empty(), bank_lines=BANK_LINES.empty()
            ),
            ReconcileParams(period=MARCH, currency="USD", as_of=date(2025, 4, 1)),
        )
