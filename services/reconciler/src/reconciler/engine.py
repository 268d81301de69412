"""The reconciliation engine: three datasets in, one explained waterfall out.

Pure and synchronous: frames in, a :class:`~reconciler.domain.ReconciliationResult` out, no I/O.
The walk from payrail's expectation to the bank's total goes through four checkpoints, and
every row of every stage is the exact amount it moves the total by:

1. ledger expected -> gateway gross (:mod:`reconciler.matching`): entries missing on either
   side, duplicates, amount and FX differences, unrecorded refunds and chargebacks, cut-off;
2. gateway gross -> gateway net: fees, taxes on fees, fees off the contracted rate;
3. gateway net -> payouts landed (:mod:`reconciler.settlement`): money paid out later, earlier
   activity paid out now, failed payouts;
4. payouts landed -> bank received: bank charges, duplicates, payouts missing, lines nobody
   can explain.

The UNEXPLAINED step is the bank total minus everything else, so the waterfall sums exactly by
construction and an accounting hole shows up as UNEXPLAINED money no row is linked to
(:attr:`~reconciler.domain.ReconciliationResult.unexplained_unlinked`), never as a silent gap.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from reconciler.domain import (
    LABELS,
    WATERFALL_ORDER,
    Cause,
    ReconcileParams,
    ReconciliationResult,
    Summary,
    Waterfall,
    WaterfallStep,
    step_kind,
)
from reconciler.frames import (
    BANK_LINES,
    GATEWAY_LINES,
    LEDGER_DISPUTES,
    LEDGER_PAYMENTS,
    LEDGER_REFUNDS,
    conform,
)
from reconciler.matching import (
    SETTLEMENT_TYPES,
    build_ledger,
    fee_rows,
    match_ledger,
    unmatched_line_rows,
)
from reconciler.rows import Context
from reconciler.settlement import SettlementStage, settle


@dataclass(frozen=True)
class Inputs:
    """The three datasets. Any may hold rows outside the period: they are used for matching
    (a charge captured on the 31st that the gateway dates the 1st, a payout that reached the
    bank after month end) and never counted in the period's totals."""

    payments: pl.DataFrame
    gateway_lines: pl.DataFrame
    bank_lines: pl.DataFrame
    refunds: pl.DataFrame = field(default_factory=LEDGER_REFUNDS.empty)
    disputes: pl.DataFrame = field(default_factory=LEDGER_DISPUTES.empty)


def reconcile(inputs: Inputs, params: ReconcileParams) -> ReconciliationResult:
    """Reconcile one period in one settlement currency. Deterministic for given inputs."""
    ctx = Context(params)
    only = _gateway_filter(params)
    payments = conform(inputs.payments, LEDGER_PAYMENTS).filter(only)
    refunds = conform(inputs.refunds, LEDGER_REFUNDS)
    disputes = conform(inputs.disputes, LEDGER_DISPUTES)
    lines = _distinct_lines(conform(inputs.gateway_lines, GATEWAY_LINES).filter(only))
    lines = lines.with_row_index("gi").with_columns(day=ctx.local_date("created_at"))
    lines = lines.with_columns(in_period=ctx.in_period(pl.col("day")))
    bank = conform(inputs.bank_lines, BANK_LINES).unique(
        ["statement_id", "line_id"], keep="first", maintain_order=True
    )

    ledger = build_ledger(payments, refunds, disputes, ctx)
    stage1 = match_ledger(ledger, lines, ctx)
    blines = lines.lazy().filter(
        pl.col("in_period")
        & (pl.col("currency") == params.currency)
        & ~pl.col("type").is_in(SETTLEMENT_TYPES)
    )
    stage3 = settle(blines, lines, bank, ctx)
    rows = pl.concat(
        [stage1.rows, unmatched_line_rows(blines, ctx), fee_rows(blines, ctx), stage3.rows]
    )
    gross, fees, net, count = (
        blines.select(pl.col("gross").sum(), pl.col("fee").sum(), pl.col("net").sum(), pl.len())
        .collect()
        .row(0)
    )

    by_kind = stage1.expected_by_kind
    expected = sum(by_kind.values())
    summary = Summary(
        ledger_captured=by_kind.get("charge", 0),
        ledger_refunded=-by_kind.get("refund", 0),
        ledger_disputed=-(by_kind.get("dispute", 0) + by_kind.get("dispute_reversal", 0)),
        ledger_expected=expected,
        gateway_gross=gross,
        gateway_fees=fees,
        gateway_net=net,
        payouts_landed=stage3.payouts_landed,
        bank_received=stage3.bank_received,
        ledger_entries=stage1.entries,
        gateway_lines=count,
        bank_lines=stage3.bank_lines,
        payouts=stage3.payouts,
        matched_ledger_gateway=stage1.matched,
        matched_payouts=stage3.matches.height,
    )
    warnings = _warnings(ledger.orphans, stage1.unconverted, stage1.out_of_scope, stage3, params)
    return ReconciliationResult(
        params=params,
        summary=summary,
        waterfall=_waterfall(rows, expected, stage3.bank_received, params.currency),
        rows=rows.sort("cause", "ref"),
        payout_matches=stage3.matches,
        warnings=tuple(warnings),
    )


def _distinct_lines(lines: pl.DataFrame) -> pl.DataFrame:
    """Drop a report line fetched twice (overlapping fetch windows): same gateway, same id.

    Checking the id column first keeps the common case - no repeats - free of a full copy."""
    if not lines.select(pl.col("line_id").is_duplicated().any()).item():
        return lines
    return lines.unique(["gateway", "line_id"], keep="first", maintain_order=True)


def _gateway_filter(params: ReconcileParams) -> pl.Expr:
    if params.gateways is None:
        return pl.lit(True)
    return pl.col("gateway").is_in(sorted(params.gateways))


def _waterfall(rows: pl.DataFrame, start: int, end: int, currency: str) -> Waterfall:
    totals = {
        cause: (int(amount), int(count))
        for cause, amount, count in rows.group_by("cause")
        .agg(pl.col("amount").sum(), pl.len())
        .iter_rows()
    }
    explained = sum(amount for cause, (amount, _) in totals.items() if cause != Cause.UNEXPLAINED)
    steps = []
    for cause in WATERFALL_ORDER:
        amount, count = totals.get(cause, (0, 0))
        if cause == Cause.UNEXPLAINED:
            amount = end - start - explained
        elif count == 0:
            continue
        steps.append(
            WaterfallStep(
                cause=cause, kind=step_kind(cause), label=LABELS[cause], amount=amount, rows=count
            )
        )
    return Waterfall(currency=currency, start=start, end=end, steps=tuple(steps))


def _warnings(
    orphans: int,
    unconverted: int,
    out_of_scope: int,
    stage3: SettlementStage,
    params: ReconcileParams,
) -> list[str]:
    notes = []
    if orphans:
        notes.append(f"{orphans} refund(s)/dispute(s) name a payment payrail does not know")
    if unconverted:
        notes.append(
            f"{unconverted} foreign-currency entries had no reference rate and no original amount;"
            " payrail's expectation used the gateway's conversion"
        )
    if out_of_scope:
        notes.append(
            f"{out_of_scope} payrail entries of the period are in other currencies with no"
            f" {params.currency} report line: reconcile them in their own currency"
        )
    if stage3.unknown_payout_lines:
        notes.append(
            f"{stage3.unknown_payout_lines} report lines name a payout missing from the report:"
            " fetch payouts for a wider window"
        )
    if stage3.unlinked_failures:
        notes.append(f"{stage3.unlinked_failures} payout failures do not say which payout failed")
    return notes
