"""The reconciliation vocabulary: cause codes, run parameters, the waterfall and the result.

A reconciliation compares three views of the same money for one period and one settlement
currency:

* payrail's ledger - what payrail recorded (payments captured, refunds, chargebacks);
* the gateways' reports - what each gateway says it did (charges, refunds, disputes, fees,
  adjustments, payouts);
* the bank statement - what actually arrived.

Every difference between "what payrail expects to land in the bank" and "what the bank
received" is attributed to a *cause*, one row per difference, each row linked to the ledger
entries, report lines, payouts and bank lines behind it. Causes are either expected reconciling
items (gateway fees, taxes on fees, money from an earlier period paid out in this one) or
discrepancy codes somebody has to look at. The waterfall sums the rows per cause; whatever the
rows do not explain is the UNEXPLAINED step, computed as the remainder so it can never be hidden.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from enum import StrEnum
from typing import Literal

import polars as pl

from payrail.contracts.reconciliation import DiscrepancyCode
from payrail.money import normalize_currency

#: Discrepancy codes - a difference a person must look at (or wait out, for timing). The enum
#: is the event contract's, so a code in a report and in a published event are the same thing.
Cause = DiscrepancyCode


class Item(StrEnum):
    """Expected reconciling items: differences that are normal and need no action."""

    GATEWAY_FEES = (
        "GATEWAY_FEES"  # processing fees as contracted (or as charged, without a schedule)
    )
    FEE_TAX = "FEE_TAX"  # tax charged on the fees (e.g. Razorpay's GST), shown apart
    PRIOR_PERIOD_SETTLED = "PRIOR_PERIOD_SETTLED"  # earlier activity paid out in this period
    PERIOD_CUTOFF = (
        "PERIOD_CUTOFF"  # payrail and the gateway dated the same entry in different periods
    )


StepKind = Literal["expected", "discrepancy"]

#: Waterfall order: ledger -> gateway gross -> gateway net -> payouts landed -> bank.
WATERFALL_ORDER: tuple[str, ...] = (
    Cause.MISSING_IN_LEDGER,
    Cause.STATUS_MISMATCH,
    Cause.MISSING_AT_GATEWAY,
    Cause.DUPLICATE,
    Cause.AMOUNT_MISMATCH,
    Cause.FX_DIFFERENCE,
    Cause.REFUND_NOT_RECORDED,
    Cause.CHARGEBACK_NOT_RECORDED,
    Item.PERIOD_CUTOFF,
    Item.GATEWAY_FEES,
    Item.FEE_TAX,
    Cause.FEE_MISMATCH,
    Item.PRIOR_PERIOD_SETTLED,
    Cause.TIMING_UNSETTLED,
    Cause.PAYOUT_FAILED,
    Cause.MISSING_IN_BANK,
    Cause.BANK_CHARGE,
    Cause.UNEXPLAINED,
)

LABELS: Mapping[str, str] = {
    Cause.MISSING_IN_LEDGER: "At the gateway, not in payrail",
    Cause.STATUS_MISMATCH: "Captured at the gateway, not captured in payrail",
    Cause.MISSING_AT_GATEWAY: "In payrail, not at the gateway",
    Cause.DUPLICATE: "Duplicates",
    Cause.AMOUNT_MISMATCH: "Amounts that differ",
    Cause.FX_DIFFERENCE: "Currency conversion",
    Cause.REFUND_NOT_RECORDED: "Refunds payrail did not record",
    Cause.CHARGEBACK_NOT_RECORDED: "Chargebacks payrail did not record",
    Item.PERIOD_CUTOFF: "Dated in another period by payrail or the gateway",
    Item.GATEWAY_FEES: "Gateway fees",
    Item.FEE_TAX: "Tax on gateway fees",
    Cause.FEE_MISMATCH: "Fees above or below the contracted rate",
    Item.PRIOR_PERIOD_SETTLED: "Earlier activity paid out this period",
    Cause.TIMING_UNSETTLED: "Not yet settled to the bank",
    Cause.PAYOUT_FAILED: "Failed payouts",
    Cause.MISSING_IN_BANK: "Paid out but never reached the bank",
    Cause.BANK_CHARGE: "Bank charges",
    Cause.UNEXPLAINED: "Unexplained",
}


def step_kind(cause: str) -> StepKind:
    return "expected" if cause in Item.__members__ else "discrepancy"


#: payrail payment statuses in which the money was captured (see checkout's state machine).
CAPTURED_STATUSES: frozenset[str] = frozenset(
    {"succeeded", "partially_refunded", "refunded", "disputed", "won", "lost"}
)


class ReconciliationError(ValueError):
    """Inputs the engine cannot reconcile (bad schema, float money, unknown currency...)."""


@dataclass(frozen=True, slots=True)
class Period:
    """The half-open date range ``[start, end)``, in the run's time zone."""

    start: date
    end: date

    def __post_init__(self) -> None:
        if self.end <= self.start:
            raise ReconciliationError(f"period end {self.end} must be after its start {self.start}")

    @classmethod
    def month(cls, year: int, month: int) -> Period:
        nxt = date(year + 1, 1, 1) if month == 12 else date(year, month + 1, 1)
        return cls(date(year, month, 1), nxt)

    @classmethod
    def parse(cls, text: str) -> Period:
        """``2025-01`` (a month) or ``2025-01-01..2025-02-01`` (half-open)."""
        if ".." in text:
            lo, hi = text.split("..", 1)
            return cls(date.fromisoformat(lo), date.fromisoformat(hi))
        try:
            year, month = (int(part) for part in text.split("-"))
        except ValueError:
            raise ReconciliationError(
                f"period {text!r} is neither YYYY-MM nor START..END"
            ) from None
        return cls.month(year, month)

    def __str__(self) -> str:
        return f"{self.start.isoformat()}..{self.end.isoformat()}"


@dataclass(frozen=True, slots=True)
class Tolerances:
    """How far a payout and a bank line may differ and still be matched without a reference.

    Amounts: within ``amount_abs`` minor units *or* ``amount_bps`` basis points of the payout
    (1 bp = 0.01 %), whichever allows more. Dates: within ``date_window_days`` business days.
    ``fee_abs`` is the rounding slack allowed between a charged fee and the fee schedule. Any
    tolerated difference still appears in the waterfall (as BANK_CHARGE or AMOUNT_MISMATCH):
    tolerance decides *matching*, never hides money.
    """

    amount_abs: int = 0
    amount_bps: int = 0
    date_window_days: int = 2
    fee_abs: int = 0

    def __post_init__(self) -> None:
        for name in ("amount_abs", "amount_bps", "date_window_days", "fee_abs"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ReconciliationError(f"tolerance {name} must be a non-negative integer")


@dataclass(frozen=True, slots=True)
class SettlementWindow:
    """When captured money must be in the bank: T+``domestic_days`` business days, or
    T+``international_days`` for lines the gateway marks international. Past that date an
    unsettled line stops being TIMING_UNSETTLED and becomes MISSING_IN_BANK."""

    domestic_days: int = 2
    international_days: int = 7
    holidays: tuple[date, ...] = ()


@dataclass(frozen=True, slots=True)
class FeeSchedule:
    """A gateway's contracted fee on a charge: ``percent_bps`` of the gross plus ``fixed``
    (minor units), before tax. Charges whose pre-tax fee differs by more than
    :attr:`Tolerances.fee_abs` are FEE_MISMATCH."""

    percent_bps: int
    fixed: int = 0


@dataclass(frozen=True)
class ReconcileParams:
    """Everything about a run except the data."""

    period: Period
    currency: str
    as_of: date
    timezone: str = "UTC"
    gateways: frozenset[str] | None = None  # None: every gateway present in the inputs
    tolerances: Tolerances = field(default_factory=Tolerances)
    settlement: SettlementWindow = field(default_factory=SettlementWindow)
    fee_schedules: Mapping[str, FeeSchedule] = field(default_factory=dict)
    #: reference rates: units of ``currency`` for one unit of the key currency (major units)
    fx_rates: Mapping[str, Decimal] = field(default_factory=dict)
    #: last day the imported bank statements cover; aging never looks past it
    bank_covered_until: date | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "currency", normalize_currency(self.currency))
        rates = {normalize_currency(code): Decimal(rate) for code, rate in self.fx_rates.items()}
        if any(rate <= 0 for rate in rates.values()):
            raise ReconciliationError("fx rates must be positive")
        object.__setattr__(self, "fx_rates", rates)

    @property
    def clock(self) -> date:
        """The date aging is judged at: ``as_of``, but never beyond what the bank data covers."""
        if self.bank_covered_until is None:
            return self.as_of
        return min(self.as_of, self.bank_covered_until)


@dataclass(frozen=True, slots=True)
class WaterfallStep:
    cause: str
    kind: StepKind
    label: str
    amount: int
    rows: int


@dataclass(frozen=True, slots=True)
class Waterfall:
    """From ``start`` (payrail expects) to ``end`` (the bank received): ``start + sum(steps)
    == end`` exactly. The UNEXPLAINED step is the remainder, always present."""

    currency: str
    start: int
    end: int
    steps: tuple[WaterfallStep, ...]

    def step(self, cause: str) -> WaterfallStep | None:
        return next((s for s in self.steps if s.cause == cause), None)

    @property
    def unexplained(self) -> int:
        step = self.step(Cause.UNEXPLAINED)
        return step.amount if step else 0


@dataclass(frozen=True, slots=True)
class Summary:
    """Totals of the period in the settlement currency, minor units."""

    ledger_captured: int
    ledger_refunded: int
    ledger_disputed: int
    ledger_expected: int  # captured - refunded - disputed (+ disputes won back)
    gateway_gross: int
    gateway_fees: int
    gateway_net: int
    payouts_landed: int
    bank_received: int
    ledger_entries: int
    gateway_lines: int
    bank_lines: int
    payouts: int
    matched_ledger_gateway: int
    matched_payouts: int


#: Columns of :attr:`ReconciliationResult.rows`: one reconciling row per difference.
ROW_SCHEMA: Mapping[str, pl.DataType] = {
    "cause": pl.String(),
    "kind": pl.String(),
    "stage": pl.String(),
    "amount": pl.Int64(),
    "ref": pl.String(),
    "gateway": pl.String(),
    "payment_id": pl.String(),
    "ledger_refs": pl.List(pl.String()),
    "gateway_line_ids": pl.List(pl.String()),
    "payout_ids": pl.List(pl.String()),
    "bank_line_ids": pl.List(pl.String()),
    "line_count": pl.Int64(),
    "expected_by": pl.Date(),
    "detail": pl.String(),
}


@dataclass(frozen=True)
class ReconciliationResult:
    params: ReconcileParams
    summary: Summary
    waterfall: Waterfall
    rows: pl.DataFrame  # ROW_SCHEMA
    payout_matches: pl.DataFrame  # payout_id, bank_line_id, method, bank_amount, payout_amount
    warnings: tuple[str, ...] = ()

    @property
    def discrepancies(self) -> pl.DataFrame:
        return self.rows.filter(pl.col("kind") == "discrepancy")

    @property
    def unexplained_unlinked(self) -> int:
        """UNEXPLAINED money that no row accounts for (0 unless the engine has a hole)."""
        linked = self.rows.filter(pl.col("cause") == Cause.UNEXPLAINED)["amount"].sum()
        return self.waterfall.unexplained - int(linked)
