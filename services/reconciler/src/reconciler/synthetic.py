"""A synthetic month with known answers, for the benchmark and the engine's own tests.

March 2025, two gateways settling USD daily (T+2 business days) into one bank account, as seen
on 4 April: the bank statement runs to 4 April, so March's last payouts are visibly in flight.
On top of a clean month of payments, refunds, chargebacks, fees and payouts, the generator
seeds discrepancies of every cause code and records each one as ``(cause, ref)`` - the row
reference the engine is expected to report - so a run can be scored for precision and recall.
The random source is seeded: the same arguments give the same month, byte for byte.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zlib import crc32

import polars as pl

from reconciler.domain import Cause, FeeSchedule, Period, ReconcileParams, Tolerances
from reconciler.engine import Inputs
from reconciler.frames import (
    BANK_LINES,
    GATEWAY_LINES,
    LEDGER_DISPUTES,
    LEDGER_PAYMENTS,
    LEDGER_REFUNDS,
    conform,
)

PERIOD = Period.month(2025, 3)
AS_OF = date(2025, 4, 4)
GATEWAYS = ("stripe", "adyen")
SCHEDULES = {
    "stripe": FeeSchedule(percent_bps=290, fixed=30),
    "adyen": FeeSchedule(percent_bps=150, fixed=10),
}
TAX_BPS = {"stripe": 0, "adyen": 1800}  # VAT charged on adyen's fee
EUR_REFERENCE = Decimal("1.08")
EUR_GATEWAY_BPS = 10_850  # the gateway converts EUR at 1.0850
DISPUTE_FEE = 1500
WIRE_FEE = 1500
_START = datetime.combine(PERIOD.start, time(), UTC)

Row = dict[str, Any]


def params() -> ReconcileParams:
    """The run parameters the synthetic month is meant to be reconciled with."""
    return ReconcileParams(
        period=PERIOD,
        currency="USD",
        as_of=AS_OF,
        tolerances=Tolerances(amount_abs=100, amount_bps=0, date_window_days=2, fee_abs=1),
        fee_schedules=SCHEDULES,
        fx_rates={"EUR": EUR_REFERENCE},
        bank_covered_until=AS_OF,
    )


@dataclass(frozen=True)
class SyntheticMonth:
    inputs: Inputs
    params: ReconcileParams
    truth: pl.DataFrame  # cause, ref: every discrepancy row a correct run reports


def business_days_after(day: date, days: int) -> date:
    """Weekends only; a weekend start rolls to Monday first (as the engine does)."""
    while day.weekday() >= 5:
        day += timedelta(days=1)
    while days:
        day += timedelta(days=1)
        if day.weekday() < 5:
            days -= 1
    return day


def _half_even(numerator: int, denominator: int) -> int:
    q, r = divmod(numerator, denominator)
    return q + 1 if 2 * r > denominator or (2 * r == denominator and q % 2) else q


def _fee(gateway: str, gross: int) -> tuple[int, int]:
    """(fee including tax, tax) as the gateway charges it on a charge of ``gross``."""
    schedule = SCHEDULES[gateway]
    pre_tax = _half_even(gross * schedule.percent_bps, 10_000) + schedule.fixed
    tax = _half_even(pre_tax * TAX_BPS[gateway], 10_000)
    return pre_tax + tax, tax


class _Month:
    """Mutable state while generating; :func:`generate` is the public entry point."""

    def __init__(self, n: int, seed: int, per_code: int) -> None:
        self.rng = random.Random(seed)
        self.n = n
        self.per_code = per_code
        self.payments: list[Row] = []
        self.refunds: list[Row] = []
        self.disputes: list[Row] = []
        self.lines: list[Row] = []
        self.bank: list[Row] = []
        self.truth: list[tuple[str, str]] = []
        self.dropped_lines: set[str] = set()
        self.dropped_payments: set[str] = set()

    def seed(self, cause: str, ref: str) -> None:
        self.truth.append((cause, ref))

    def moment(self, lo_day: int = 0, hi_day: int = 31) -> datetime:
        return _START + timedelta(seconds=self.rng.randrange(lo_day * 86_400, hi_day * 86_400))

    def line(
        self,
        gateway: str,
        line_id: str,
        kind: str,
        gross: int,
        fee: int,
        at: datetime,
        **extra: object,
    ) -> None:
        self.lines.append(
            {
                "gateway": gateway,
                "line_id": line_id,
                "type": kind,
                "gross": gross,
                "fee": fee,
                "tax": extra.pop("tax", 0),
                "net": gross - fee,
                "currency": "USD",
                "created_at": at,
                "payout_id": extra.pop("payout_id", _payout_id(gateway, at.date())),
                **extra,
            }
        )

    def base(self) -> list[int]:
        """Clean payments with their charge lines, some refunded or disputed; returns the
        indices untouched by refunds/disputes, for seeding."""
        rng = self.rng
        clean: list[int] = []
        for i in range(self.n):
            gateway = GATEWAYS[i % 2]
            at = self.moment()
            amount = rng.randrange(500, 50_000)
            status = "succeeded"
            roll = rng.random()
            if roll < 0.03:
                refunded = amount if rng.random() < 0.5 else rng.randrange(100, amount)
                status = "refunded" if refunded == amount else "partially_refunded"
                when = at + timedelta(days=rng.randrange(1, 6), seconds=rng.randrange(86_400))
                if when.date() <= AS_OF:
                    self.line(
                        gateway,
                        f"re_{i:08d}",
                        "refund",
                        -refunded,
                        0,
                        when,
                        gateway_payment_id=f"pi_{i:08d}",
                        source_id=f"re_{i:08d}",
                    )
                    self.refunds.append(
                        {
                            "refund_id": f"rf_{i:08d}",
                            "payment_id": f"pay_{i:08d}",
                            "gateway_refund_id": f"re_{i:08d}" if rng.random() < 0.5 else None,
                            "amount": refunded,
                            "currency": "USD",
                            "occurred_at": when,
                        }
                    )
            elif roll < 0.031:
                status = "lost"
                when = at + timedelta(days=rng.randrange(3, 10))
                if when.date() <= AS_OF:
                    self.line(
                        gateway,
                        f"du_{i:08d}",
                        "dispute",
                        -amount,
                        DISPUTE_FEE,
                        when,
                        gateway_payment_id=f"pi_{i:08d}",
                        source_id=f"dp_{i:08d}",
                    )
                    self.disputes.append(
                        {
                            "dispute_id": f"ds_{i:08d}",
                            "payment_id": f"pay_{i:08d}",
                            "gateway_dispute_id": f"dp_{i:08d}",
                            "status": "lost",
                            "amount": amount,
                            "currency": "USD",
                            "opened_at": when,
                        }
                    )
            else:
                clean.append(i)
            fee, tax = _fee(gateway, amount)
            self.payments.append(
                {
                    "payment_id": f"pay_{i:08d}",
                    "gateway": gateway,
                    "gateway_payment_id": f"pi_{i:08d}",
                    "status": status,
                    "amount": amount,
                    "currency": "USD",
                    "user_id": f"u_{i % 50_000}",
                    "sku": "pro-monthly",
                    "occurred_at": at,
                }
            )
            self.line(
                gateway,
                f"ch_{i:08d}",
                "charge",
                amount,
                fee,
                at,
                tax=tax,
                gateway_payment_id=f"pi_{i:08d}",
                payment_id=f"pay_{i:08d}",
            )
        return clean

    def ledger_seeds(self, pool: list[int]) -> None:
        """Discrepancies between payrail and the gateway, on distinct clean payments."""
        k = self.per_code
        picks = iter(self.rng.sample(pool, 9 * k))
        by_id = {p["payment_id"]: p for p in self.payments}
        lines_by_id = {ln["line_id"]: ln for ln in self.lines}
        for _ in range(k):
            i = next(picks)  # payrail recorded a different amount
            payment = by_id[f"pay_{i:08d}"]
            payment["amount"] = int(payment["amount"]) + self.rng.choice(
                [-1, 1]
            ) * self.rng.randrange(1, 400)
            self.seed(Cause.AMOUNT_MISMATCH, f"pay_{i:08d}")
            i = next(picks)  # payrail thinks it failed; the gateway captured it
            by_id[f"pay_{i:08d}"]["status"] = "failed"
            self.seed(Cause.STATUS_MISMATCH, f"ch_{i:08d}")
            i = next(picks)  # the gateway never saw it
            self.dropped_lines.add(f"ch_{i:08d}")
            self.seed(Cause.MISSING_AT_GATEWAY, f"pay_{i:08d}")
            i = next(picks)  # payrail never recorded it
            self.dropped_payments.add(f"pay_{i:08d}")
            self.seed(Cause.MISSING_IN_LEDGER, f"ch_{i:08d}")
            i = next(picks)  # charged twice at the gateway
            charge = lines_by_id[f"ch_{i:08d}"]
            self.lines.append({**charge, "line_id": f"ch_{i:08d}-2"})
            self.seed(Cause.DUPLICATE, f"ch_{i:08d}-2")
            i = next(picks)  # recorded twice by payrail
            payment = by_id[f"pay_{i:08d}"]
            self.payments.append({**payment, "payment_id": f"pay_{i:08d}-2"})
            self.seed(Cause.DUPLICATE, f"pay_{i:08d}-2")
            i = next(picks)  # fee off the contract
            charge = lines_by_id[f"ch_{i:08d}"]
            charge["fee"] = int(charge["fee"]) + 50
            charge["net"] = int(charge["gross"]) - int(charge["fee"])
            self.seed(Cause.FEE_MISMATCH, f"ch_{i:08d}")
            i = next(picks)  # paid in EUR, settled in USD at the gateway's rate
            payment = by_id[f"pay_{i:08d}"]
            charge = lines_by_id[f"ch_{i:08d}"]
            euros = max(int(payment["amount"]), 1000)
            gross = _half_even(euros * EUR_GATEWAY_BPS, 10_000)
            fee, tax = _fee(str(charge["gateway"]), gross)
            payment.update(amount=euros, currency="EUR")
            charge.update(
                gross=gross,
                fee=fee,
                tax=tax,
                net=gross - fee,
                original_amount=euros,
                original_currency="EUR",
            )
            self.seed(Cause.FX_DIFFERENCE, f"pay_{i:08d}")
            i = next(picks)  # settled by no payout although it is long due
            charge = lines_by_id[f"ch_{i:08d}"]
            charge.update(payout_id=None, created_at=self.moment(1, 20))
            by_id[f"pay_{i:08d}"]["occurred_at"] = charge["created_at"]
            self.seed(Cause.MISSING_IN_BANK, f"ch_{i:08d}")
        for j in range(k):
            gateway = GATEWAYS[j % 2]
            at = self.moment(0, 28)
            gpid = f"pi_{self.rng.choice(pool):08d}"
            self.line(
                gateway,
                f"re_x{j:05d}",
                "refund",
                -self.rng.randrange(100, 400),
                0,
                at,
                gateway_payment_id=gpid,
                source_id=f"re_x{j:05d}",
            )
            self.seed(Cause.REFUND_NOT_RECORDED, f"re_x{j:05d}")
            self.line(
                gateway,
                f"du_x{j:05d}",
                "dispute",
                -self.rng.randrange(500, 5000),
                DISPUTE_FEE,
                at,
                gateway_payment_id=gpid,
                source_id=f"dp_x{j:05d}",
            )
            self.seed(Cause.CHARGEBACK_NOT_RECORDED, f"du_x{j:05d}")
            self.line(
                gateway,
                f"adj_{j:05d}",
                "adjustment",
                self.rng.randrange(-900, 900) or 1,
                0,
                at,
                reporting_category="adjustment",
            )
            self.seed(Cause.MISSING_IN_LEDGER, f"adj_{j:05d}")
            late = datetime(2025, 3, 31, 15, tzinfo=UTC) + timedelta(seconds=j)
            amount = self.rng.randrange(500, 50_000)
            fee, tax = _fee(gateway, amount)
            self.payments.append(
                {
                    "payment_id": f"pay_i{j:05d}",
                    "gateway": gateway,
                    "gateway_payment_id": f"pi_i{j:05d}",
                    "status": "succeeded",
                    "amount": amount,
                    "currency": "USD",
                    "occurred_at": late,
                }
            )
            self.line(
                gateway,
                f"ch_i{j:05d}",
                "charge",
                amount,
                fee,
                late,
                tax=tax,
                payout_id=None,
                gateway_payment_id=f"pi_i{j:05d}",
                payment_id=f"pay_i{j:05d}",
                international=True,
            )
            self.seed(Cause.TIMING_UNSETTLED, f"ch_i{j:05d}")  # T+7: due 9 April

    def payouts(self) -> list[Row]:
        """One payout per gateway and day, plus February's last two arriving in March."""
        totals: dict[str, int] = {}
        gateway_of: dict[str, str] = {}
        for ln in self.lines:
            payout_id = ln["payout_id"]
            if isinstance(payout_id, str) and ln["line_id"] not in self.dropped_lines:
                totals[payout_id] = totals.get(payout_id, 0) + int(ln["net"])
                gateway_of[payout_id] = str(ln["gateway"])
        for gateway in GATEWAYS:
            for day in (date(2025, 2, 27), date(2025, 2, 28)):
                payout_id = _payout_id(gateway, day)
                totals[payout_id] = self.rng.randrange(1_000_000, 9_000_000)
                gateway_of[payout_id] = gateway
        payouts = []
        for payout_id, amount in sorted(totals.items()):
            day = date.fromisoformat(payout_id.rsplit("_", 1)[1])
            arrival = business_days_after(day, 2)
            if day > AS_OF:
                continue
            payout = {
                "gateway": gateway_of[payout_id],
                "line_id": f"txn_{payout_id}",
                "type": "payout",
                "gross": -amount,
                "fee": 0,
                "tax": 0,
                "net": -amount,
                "currency": "USD",
                "created_at": datetime.combine(day, time(23, 30), UTC),
                "available_on": datetime.combine(arrival, time(), UTC),
                "payout_id": payout_id,
                "settlement_reference": f"TRC{crc32(payout_id.encode()):010d}",
            }
            payouts.append(payout)
            has_lines = PERIOD.start <= day < PERIOD.end
            if has_lines and arrival >= PERIOD.end:
                self.seed(Cause.TIMING_UNSETTLED, payout_id)
        self.lines.extend(payouts)
        return payouts

    def bank_side(self, payouts: list[Row]) -> None:
        rng = self.rng
        mid_march = [
            p
            for p in payouts
            if date(2025, 3, 5) <= _arrival(p) <= date(2025, 3, 25) and p["created_at"] >= _START
        ]
        chosen = rng.sample(mid_march, min(len(mid_march), 12))
        missing, failed, short = chosen[0:4], chosen[4:8], chosen[8:12]
        for p in missing:
            self.seed(Cause.MISSING_IN_BANK, str(p["payout_id"]))
        for p in failed:
            self.line(
                str(p["gateway"]),
                f"pf_{p['payout_id']}",
                "payout_failure",
                -int(p["net"]),
                0,
                datetime.combine(_arrival(p), time(12), UTC),
                payout_id=None,
                source_id=p["payout_id"],
            )
            self.seed(Cause.PAYOUT_FAILED, str(p["payout_id"]))
        skip = {str(p["payout_id"]) for p in missing + failed}
        paired: dict[date, list[Row]] = {}
        for p in payouts:
            arrival = _arrival(p)
            if str(p["payout_id"]) in skip or arrival > AS_OF:
                continue
            paired.setdefault(arrival, []).append(p)
        n = 0
        for arrival, group in sorted(paired.items()):
            merge = len(group) == 2 and rng.random() < 0.25  # one credit for both gateways
            units = [group] if merge else [[p] for p in group]
            for unit in units:
                n += 1
                line_id = f"bk{n:06d}"
                amount = sum(-int(p["net"]) for p in unit)
                refs = [str(p["settlement_reference"]) for p in unit]
                description = "SETTLEMENT " + " ".join(str(p["payout_id"]) for p in unit)
                is_short = any(p in short for p in unit)
                if not merge and not is_short and rng.random() < 0.2:  # no reference at all
                    refs, description = [], f"ACH CREDIT {str(unit[0]['gateway']).upper()} PAYMENTS"
                if is_short:
                    amount -= WIRE_FEE
                    self.seed(Cause.BANK_CHARGE, line_id)
                self.bank.append(_bank_line(line_id, arrival, amount, refs, description))
        settlements = [b for b in self.bank if b["booking_date"] < PERIOD.end and b["references"]]
        for original in rng.sample(settlements, min(self.per_code, len(settlements))):
            self.bank.append({**original, "line_id": f"{original['line_id']}-2"})
            self.seed(Cause.DUPLICATE, f"{original['line_id']}-2")
        for j in range(self.per_code):
            day = PERIOD.start + timedelta(days=rng.randrange(0, 31))
            self.bank.append(
                _bank_line(
                    f"chg{j:04d}", day, -rng.randrange(100, 2500), [], "MONTHLY ACCOUNT FEE", "CHRG"
                )
            )
            self.seed(Cause.BANK_CHARGE, f"chg{j:04d}")
            self.bank.append(
                _bank_line(f"unk{j:04d}", day, 1000 + 7 * j, [f"X{j:08d}"], "INCOMING TRANSFER")
            )
            self.seed(Cause.UNEXPLAINED, f"unk{j:04d}")


def _payout_id(gateway: str, day: date) -> str:
    return f"po_{gateway}_{day.isoformat()}"


def _arrival(payout: Row) -> date:
    available = payout["available_on"]
    assert isinstance(available, datetime)
    return available.date()


def _bank_line(
    line_id: str, day: date, amount: int, refs: list[str], description: str, code: str | None = None
) -> Row:
    return {
        "statement_id": f"STMT-{day:%Y-%m}",
        "line_id": line_id,
        "account": "US00BANK0001",
        "booking_date": day,
        "value_date": day,
        "amount": amount,
        "currency": "USD",
        "end_to_end_id": None,
        "references": refs,
        "bank_code": code,
        "counterparty": None,
        "description": description,
    }


def generate(payments: int, *, seed: int = 7, per_code: int = 25) -> SyntheticMonth:
    """A month of ``payments`` payments with ``per_code`` seeded discrepancies per ledger-side
    code (payout-level codes get a handful each: a month has few payouts)."""
    month = _Month(payments, seed, per_code)
    pool = month.base()
    month.ledger_seeds(pool)
    month.bank_side(month.payouts())
    cutoff = datetime.combine(AS_OF, time.max, UTC)
    lines = [
        ln
        for ln in month.lines
        if ln["created_at"] <= cutoff and ln["line_id"] not in month.dropped_lines
    ]
    payments_kept = [p for p in month.payments if p["payment_id"] not in month.dropped_payments]
    frames = {
        "payments": _frame(payments_kept, LEDGER_PAYMENTS.columns),
        "refunds": _frame(month.refunds, LEDGER_REFUNDS.columns),
        "disputes": _frame(month.disputes, LEDGER_DISPUTES.columns),
        "gateway_lines": _frame(lines, GATEWAY_LINES.columns),
        "bank_lines": _frame(month.bank, BANK_LINES.columns),
    }
    inputs = Inputs(
        payments=conform(frames["payments"], LEDGER_PAYMENTS),
        refunds=conform(frames["refunds"], LEDGER_REFUNDS),
        disputes=conform(frames["disputes"], LEDGER_DISPUTES),
        gateway_lines=conform(frames["gateway_lines"], GATEWAY_LINES),
        bank_lines=conform(frames["bank_lines"], BANK_LINES),
    )
    truth = pl.DataFrame(
        month.truth, schema={"cause": pl.String(), "ref": pl.String()}, orient="row"
    )
    return SyntheticMonth(inputs=inputs, params=params(), truth=truth)


def _frame(rows: list[Row], columns: Mapping[str, pl.DataType]) -> pl.DataFrame:
    return pl.DataFrame(
        {name: [row.get(name) for row in rows] for name in columns}, schema=dict(columns)
    )


def score(found: pl.DataFrame, truth: pl.DataFrame) -> pl.DataFrame:
    """Precision and recall per cause code of discrepancy rows ``found`` (cause, ref) against
    the seeded ``truth``: true positives need the right code *and* the right row."""
    found = found.select("cause", "ref").unique().with_columns(found=pl.lit(True))
    truth = truth.unique().with_columns(seeded=pl.lit(True))
    both = found.join(truth, on=["cause", "ref"], how="full", coalesce=True)
    return (
        both.group_by("cause")
        .agg(
            seeded=pl.col("seeded").sum(),
            found=pl.col("found").sum(),
            correct=(pl.col("found") & pl.col("seeded")).sum(),
        )
        .with_columns(
            precision=pl.col("correct") / pl.col("found"),
            recall=pl.col("correct") / pl.col("seeded"),
        )
        .sort("cause")
    )
