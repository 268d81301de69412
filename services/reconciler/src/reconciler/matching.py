"""payrail's ledger against the gateways' report lines (ledger -> gateway gross -> gateway net).

Ledger entries (captured payments, succeeded refunds, chargebacks and chargebacks won back)
are paired 1:1 with report lines of the same kind on gateway ids:

* charges on ``(gateway, gateway_payment_id)``;
* refunds, disputes and dispute reversals first on the gateway's own refund / dispute id, then,
  for entries payrail stored without it, on ``(gateway, gateway_payment_id, currency, amount)``.

Within a key, entries pair in time order, so a second charge for one gateway payment is a
DUPLICATE rather than hiding its twin. Every pair or leftover becomes a row whose amount is the
difference it makes between "payrail expects" and "the gateway booked", and the fees of every
gateway line become the GATEWAY_FEES / FEE_TAX / FEE_MISMATCH rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from payrail.money import exponent
from reconciler.domain import CAPTURED_STATUSES, Cause, Item
from reconciler.rows import Context, bps_of, div_half_even, make_rows, money_text, one, rate_table

MATCHABLE = ("charge", "refund", "dispute", "dispute_reversal")
SETTLEMENT_TYPES = ("payout", "payout_failure")

_ENTRY_COLUMNS = (
    "kind",
    "ref",
    "payment_id",
    "gateway",
    "gpid",
    "gref",
    "amount",
    "currency",
    "ts",
)


@dataclass(frozen=True)
class Ledger:
    """payrail's records in engine form: signed entries plus the payments never captured."""

    entries: (
        pl.DataFrame
    )  # li, kind, ref, payment_id, gateway, gpid, gref, amount, currency, ts, day
    uncaptured: pl.DataFrame  # gateway, gpid, payment_id, status of payments never captured
    owners: pl.DataFrame  # gateway, gpid, owner: which payrail payment a gateway id belongs to
    orphans: int  # refunds / disputes whose payment payrail does not know


def build_ledger(
    payments: pl.DataFrame, refunds: pl.DataFrame, disputes: pl.DataFrame, ctx: Context
) -> Ledger:
    """Turn conformed ledger frames into signed entries: charge +, refund -, dispute -,
    dispute won back +. Only refunds that succeeded count; a dispute still open or lost is a
    debit, one won is a debit and a later credit (as the gateways book it)."""
    captured = pl.col("status").is_in(list(CAPTURED_STATUSES))
    charges = payments.filter(captured).select(
        kind=pl.lit("charge"),
        ref=pl.col("payment_id"),
        payment_id=pl.col("payment_id"),
        gateway=pl.col("gateway"),
        gpid=pl.col("gateway_payment_id"),
        gref=pl.lit(None, pl.String()),
        amount=pl.col("amount"),
        currency=pl.col("currency"),
        ts=pl.col("occurred_at"),
    )
    owners = payments.select("payment_id", "gateway", gpid=pl.col("gateway_payment_id")).unique(
        "payment_id", keep="first"
    )
    refund_rows = refunds.filter(pl.col("status") == "succeeded").join(
        owners, on="payment_id", how="left"
    )
    dispute_rows = disputes.join(owners, on="payment_id", how="left")
    orphans = refund_rows["gateway"].null_count() + dispute_rows["gateway"].null_count()
    refund_entries = refund_rows.drop_nulls("gateway").select(
        kind=pl.lit("refund"),
        ref=pl.col("refund_id"),
        payment_id=pl.col("payment_id"),
        gateway=pl.col("gateway"),
        gpid=pl.col("gpid"),
        gref=pl.col("gateway_refund_id"),
        amount=-pl.col("amount"),
        currency=pl.col("currency"),
        ts=pl.col("occurred_at"),
    )
    known = dispute_rows.drop_nulls("gateway")
    common = {
        "payment_id": pl.col("payment_id"),
        "gateway": pl.col("gateway"),
        "gpid": pl.col("gpid"),
        "gref": pl.col("gateway_dispute_id"),
        "currency": pl.col("currency"),
    }
    opened = known.select(
        kind=pl.lit("dispute"),
        ref=pl.col("dispute_id"),
        amount=-pl.col("amount"),
        ts=pl.col("opened_at"),
        **common,
    )
    won = known.filter(pl.col("status") == "won").select(
        kind=pl.lit("dispute_reversal"),
        ref=pl.col("dispute_id") + "#won",
        amount=pl.col("amount"),
        ts=pl.coalesce("closed_at", "opened_at"),
        **common,
    )
    entries = (
        pl.concat(
            [frame.select(_ENTRY_COLUMNS) for frame in (charges, refund_entries, opened, won)]
        )
        .with_row_index("li")
        .with_columns(day=ctx.local_date("ts"))
    )
    uncaptured = payments.filter(~captured).select(
        "gateway", "payment_id", "status", gpid=pl.col("gateway_payment_id")
    )
    by_gateway_id = (
        payments.select("gateway", gpid=pl.col("gateway_payment_id"), owner=pl.col("payment_id"))
        .drop_nulls("gpid")
        .unique(["gateway", "gpid"], keep="first")
    )
    return Ledger(entries=entries, uncaptured=uncaptured, owners=by_gateway_id, orphans=orphans)


@dataclass(frozen=True)
class LedgerStage:
    rows: pl.DataFrame
    expected_by_kind: dict[str, int]  # settlement-currency sums of the period's ledger entries
    entries: int  # ledger entries of the period in scope
    matched: int
    unconverted: int  # foreign pairs payrail's expectation took from the gateway's conversion
    out_of_scope: int  # foreign ledger entries of the period with no line in this currency


def _pair(left: pl.LazyFrame, right: pl.LazyFrame, keys: list[str]) -> pl.LazyFrame:
    """``li``/``gi`` pairs: entries and lines equal on ``keys``, paired in time order."""
    ranked_left = (
        left.drop_nulls(keys)
        .sort("ts", "ref")
        .select(*keys, "li", rank=pl.int_range(pl.len()).over(keys))
    )
    ranked_right = (
        right.drop_nulls(keys)
        .sort("ts", "line_id")
        .select(*keys, "gi", rank=pl.int_range(pl.len()).over(keys))
    )
    return ranked_left.join(ranked_right, on=[*keys, "rank"], how="inner").select("li", "gi")


_PAIR_COLUMNS = (
    "li",
    "gi",
    "kind",
    "ref",
    "payment_id",
    "gateway",
    "amount",
    "currency",
    "day",
    "line_id",
    "gross",
    "original_amount",
    "original_currency",
    "in_period",
    "line_day",
)
_CONVERTED = ("expected", "amount_delta", "fx_delta", "unconverted", "digits")


def match_ledger(ledger: Ledger, lines: pl.DataFrame, ctx: Context) -> LedgerStage:
    """Pair ledger entries with report lines; rows for every difference between them.

    Month-end volumes make the pairs the big part (one per payment): they stay lazy, and only
    what becomes a row - differences, leftovers - or a total is ever materialized.
    """
    currency = ctx.currency
    gw = (
        lines.lazy()
        .filter(pl.col("type").is_in(MATCHABLE))
        .select(
            "gi",
            "line_id",
            "gateway",
            "gross",
            "original_amount",
            "original_currency",
            "in_period",
            line_day=pl.col("day"),
            kind=pl.col("type"),
            gpid=pl.col("gateway_payment_id"),
            gref=pl.col("source_id"),
            line_currency=pl.col("currency"),
            line_payment_id=pl.col("payment_id"),
            pid=pl.col("payment_id"),
            ts=pl.col("created_at"),
        )
    )
    entries = ledger.entries.lazy().with_columns(pid=pl.col("payment_id"))
    is_charge = pl.col("kind") == "charge"
    by_original = {
        "m_currency": pl.coalesce("original_currency", "line_currency"),
        "m_amount": pl.when(pl.col("original_currency").is_not_null())
        .then(pl.col("original_amount"))
        .otherwise(pl.col("gross")),
    }
    other_entries = (
        entries.filter(~is_charge)
        .with_columns(m_currency=pl.col("currency"), m_amount=pl.col("amount"))
        .collect()
    )
    other_lines = gw.filter(~is_charge).with_columns(**by_original).collect()
    pairs = [_pair(entries.filter(is_charge), gw.filter(is_charge), ["gateway", "gpid"]).collect()]
    taken = pairs[0]
    pairs.append(
        _pair(
            entries.filter(is_charge).join(taken.lazy(), on="li", how="anti"),
            gw.filter(is_charge).join(taken.lazy(), on="gi", how="anti"),
            ["gateway", "pid"],
        ).collect()
    )
    for keys in (
        ["kind", "gateway", "gref"],
        ["kind", "gateway", "gpid", "m_currency", "m_amount"],
        ["kind", "gateway", "pid", "m_currency", "m_amount"],
    ):
        taken = pl.concat(pairs)
        pairs.append(
            _pair(
                other_entries.join(taken, on="li", how="anti").lazy(),
                other_lines.join(taken, on="gi", how="anti").lazy(),
                keys,
            ).collect()
        )
    paired = pl.concat(pairs).lazy()

    both = (
        paired.join(entries, on="li")
        .join(gw.drop("kind", "gateway", "gpid", "gref", "ts"), on="gi")
        .filter(pl.col("line_currency") == currency)
        .select(_PAIR_COLUMNS)
    )
    same = both.filter(pl.col("currency") == currency).with_columns(
        expected=pl.col("amount"),
        amount_delta=pl.col("gross") - pl.col("amount"),
        fx_delta=pl.lit(0, pl.Int64()),
        unconverted=pl.lit(False),
        digits=pl.lit(None, pl.Int64()),
    )
    foreign = _convert(both.filter(pl.col("currency") != currency).collect(), ctx)
    pairs_in_scope = pl.concat([same, foreign.select(*_PAIR_COLUMNS, *_CONVERTED).lazy()])
    l_in = ctx.in_period(pl.col("day"))
    g_in = pl.col("in_period")
    differing = (pl.col("amount_delta") != 0) | (pl.col("fx_delta") != 0)
    notable, paired_sums, matched = pl.collect_all(
        [
            pairs_in_scope.filter((l_in & g_in & differing) | (l_in != g_in)),
            pairs_in_scope.filter(l_in).group_by("kind").agg(pl.col("expected").sum(), pl.len()),
            pairs_in_scope.select(pl.len()),
        ]
    )

    ledger_only = entries.join(paired, on="li", how="anti").collect()
    gateway_only = (
        gw.join(paired, on="gi", how="anti")
        .filter(pl.col("in_period") & (pl.col("line_currency") == currency))
        .collect()
    )
    charge_pairs = paired.join(entries.filter(is_charge), on="li")
    paired_keys = pl.concat(
        [
            charge_pairs.select("gateway", key=pl.col("gpid")),
            charge_pairs.select("gateway", key=pl.col("pid")),
        ]
    )
    ledger_only = ledger_only.join(
        _twins(ledger_only, "li", ["gpid"], paired_keys), on="li", how="left"
    )
    uncaptured = ledger.uncaptured.select(
        "gateway", "gpid", "status", uncaptured_payment_id=pl.col("payment_id")
    )
    gateway_only = (
        gateway_only.join(
            _twins(gateway_only, "gi", ["gpid", "pid"], paired_keys), on="gi", how="left"
        )
        .join(
            uncaptured.drop_nulls("gpid").unique(["gateway", "gpid"], keep="first"),
            on=["gateway", "gpid"],
            how="left",
        )
        .join(
            uncaptured.select(
                "gateway",
                pid=pl.col("uncaptured_payment_id"),
                by_pid=pl.col("uncaptured_payment_id"),
                status_by_pid=pl.col("status"),
            ).unique(["gateway", "pid"], keep="first"),
            on=["gateway", "pid"],
            how="left",
        )
        .with_columns(
            uncaptured_payment_id=pl.coalesce("uncaptured_payment_id", "by_pid"),
            status=pl.coalesce("status", "status_by_pid"),
        )
        .join(ledger.owners, on=["gateway", "gpid"], how="left")
    )
    local_ledger = ledger_only.filter(l_in & (pl.col("currency") == currency))
    totals = {kind: (int(amount), int(n)) for kind, amount, n in paired_sums.iter_rows()}
    for kind, amount, n in (
        local_ledger.group_by("kind").agg(pl.col("amount").sum(), pl.len()).iter_rows()
    ):
        before, count = totals.get(kind, (0, 0))
        totals[kind] = (before + int(amount), count + int(n))
    return LedgerStage(
        rows=pl.concat(
            [
                *_pair_rows(notable, ctx),
                _ledger_only_rows(local_ledger, ctx),
                _gateway_only_rows(gateway_only, ctx),
            ]
        ),
        expected_by_kind={kind: amount for kind, (amount, _) in totals.items()},
        entries=sum(n for _, n in totals.values()),
        matched=int(matched.item()),
        unconverted=foreign.filter(pl.col("unconverted")).height,
        out_of_scope=ledger_only.filter(l_in & (pl.col("currency") != currency)).height,
    )


def _twins(
    leftovers: pl.DataFrame, index: str, keys: list[str], paired_keys: pl.LazyFrame
) -> pl.DataFrame:
    """``index`` of leftover charges sharing a gateway id or payrail id (any of ``keys``) with
    an already paired charge: the leftover is a second copy - a DUPLICATE - not a missing one."""
    candidates = pl.concat(
        [
            leftovers.filter(pl.col("kind") == "charge").select(index, "gateway", key=pl.col(key))
            for key in keys
        ]
    ).drop_nulls()
    return (
        candidates.lazy()
        .join(paired_keys, on=["gateway", "key"], how="semi")
        .select(index, twin=pl.lit(True))
        .unique()
        .collect()
    )


def _pair_rows(notable: pl.DataFrame, ctx: Context) -> list[pl.DataFrame]:
    l_in = ctx.in_period(pl.col("day"))
    g_in = pl.col("in_period")
    links = {
        "ref": pl.col("ref"),
        "gateway": pl.col("gateway"),
        "payment_id": pl.col("payment_id"),
        "ledger_refs": one("ref"),
        "gateway_line_ids": one("line_id"),
    }
    return [
        make_rows(
            notable.filter(l_in & g_in & (pl.col("amount_delta") != 0)).select(
                amount=pl.col("amount_delta"),
                detail=pl.format(
                    "payrail {} {}, gateway {}", "kind", ctx.money("expected"), ctx.money("gross")
                ),
                **links,
            ),
            cause=Cause.AMOUNT_MISMATCH,
            stage="ledger-gateway",
        ),
        make_rows(
            notable.filter(l_in & g_in & (pl.col("fx_delta") != 0)).select(
                amount=pl.col("fx_delta"),
                detail=pl.format(
                    "{} {} settled as {}",
                    money_text(pl.col("amount"), pl.col("digits")),
                    "currency",
                    ctx.money("gross"),
                ),
                **links,
            ),
            cause=Cause.FX_DIFFERENCE,
            stage="ledger-gateway",
        ),
        make_rows(
            notable.filter(l_in != g_in).select(
                amount=pl.when(l_in).then(-pl.col("expected")).otherwise(pl.col("gross")),
                detail=pl.format("payrail dated it {}, the gateway {}", "day", "line_day"),
                **links,
            ),
            cause=Item.PERIOD_CUTOFF,
            stage="ledger-gateway",
        ),
    ]


def _ledger_only_rows(local_ledger: pl.DataFrame, ctx: Context) -> pl.DataFrame:
    return make_rows(
        local_ledger.select(
            amount=-pl.col("amount"),
            detail=pl.format(
                "payrail {} {} not in the gateway report", "kind", ctx.money("amount")
            ),
            ref=pl.col("ref"),
            gateway=pl.col("gateway"),
            payment_id=pl.col("payment_id"),
            ledger_refs=one("ref"),
            cause=pl.when((pl.col("kind") == "charge") & pl.col("twin").is_not_null())
            .then(pl.lit(Cause.DUPLICATE))
            .otherwise(pl.lit(Cause.MISSING_AT_GATEWAY)),
        ),
        cause=pl.col("cause"),
        stage="ledger-gateway",
    )


def _gateway_only_rows(gateway_only: pl.DataFrame, ctx: Context) -> pl.DataFrame:
    return make_rows(
        gateway_only.select(
            amount=pl.col("gross"),
            ref=pl.col("line_id"),
            gateway=pl.col("gateway"),
            payment_id=pl.coalesce("line_payment_id", "owner"),
            ledger_refs=one("uncaptured_payment_id"),
            gateway_line_ids=one("line_id"),
            detail=pl.when(pl.col("uncaptured_payment_id").is_not_null())
            .then(
                pl.format("gateway {} {}; payrail status {}", "kind", ctx.money("gross"), "status")
            )
            .otherwise(pl.format("gateway {} {} not in payrail", "kind", ctx.money("gross"))),
            cause=pl.when(pl.col("kind") == "refund")
            .then(pl.lit(Cause.REFUND_NOT_RECORDED))
            .when(pl.col("kind") != "charge")
            .then(pl.lit(Cause.CHARGEBACK_NOT_RECORDED))
            .when(pl.col("twin").is_not_null())
            .then(pl.lit(Cause.DUPLICATE))
            .when(pl.col("uncaptured_payment_id").is_not_null())
            .then(pl.lit(Cause.STATUS_MISMATCH))
            .otherwise(pl.lit(Cause.MISSING_IN_LEDGER)),
        ),
        cause=pl.col("cause"),
        stage="ledger-gateway",
    )


def _convert(foreign: pl.DataFrame, ctx: Context) -> pl.DataFrame:
    """Pairs whose ledger currency is not the settlement currency, with ``expected`` (payrail's
    amount in the settlement currency), ``amount_delta`` and ``fx_delta`` (their sum is
    ``gross - expected``) and ``digits`` (the ledger currency's exponent, for display).

    A foreign amount converts at the run's reference rate; without one, at the rate the gateway
    applied to this very line (``gross / original_amount``), which makes the FX difference zero
    and leaves any amount difference visible. Only when the gateway gives neither is payrail's
    expectation taken from the gateway (counted in ``unconverted``).
    """
    rates = rate_table(dict(ctx.params.fx_rates), ctx.currency)
    codes = foreign["currency"].unique().to_list()
    digits = pl.DataFrame(
        {"currency": codes, "digits": [exponent(code) for code in codes]},
        schema={"currency": pl.String(), "digits": pl.Int64()},
    )
    frame = foreign.join(rates, on="currency", how="left").join(digits, on="currency", how="left")
    has_rate = pl.col("rate_num").is_not_null()
    has_original = (
        (pl.col("original_currency") == pl.col("currency"))
        & pl.col("original_amount").is_not_null()
        & (pl.col("original_amount") != 0)
    )
    at_rate = div_half_even(
        pl.col("amount").cast(pl.Int128) * pl.col("rate_num"), pl.col("rate_den")
    )
    implied = div_half_even(
        pl.col("amount").cast(pl.Int128) * pl.col("gross") * pl.col("original_amount").sign(),
        pl.col("original_amount").abs(),
    )
    original_at_rate = div_half_even(
        pl.col("original_amount").cast(pl.Int128) * pl.col("rate_num"), pl.col("rate_den")
    )
    frame = frame.with_columns(
        expected=pl.when(has_rate)
        .then(at_rate)
        .when(has_original)
        .then(implied)
        .otherwise(pl.col("gross")),
        converted_original=pl.when(has_rate).then(original_at_rate).otherwise(pl.col("gross")),
        unconverted=~has_rate & ~has_original,
    )
    return frame.with_columns(
        amount_delta=pl.when(has_original)
        .then(pl.col("converted_original") - pl.col("expected"))
        .otherwise(0),
        fx_delta=pl.when(has_original)
        .then(pl.col("gross") - pl.col("converted_original"))
        .otherwise(pl.col("gross") - pl.col("expected")),
    )


def fee_rows(blines: pl.LazyFrame, ctx: Context) -> pl.DataFrame:
    """Fees of the period's gateway lines: GATEWAY_FEES and FEE_TAX per gateway (aggregated:
    they are expected and numerous), FEE_MISMATCH per charge off its fee schedule, and the
    gross of fee-type lines (monthly billing) as GATEWAY_FEES too."""
    tolerance = ctx.params.tolerances.fee_abs
    schedules = pl.DataFrame(
        [
            {"gateway": name, "bps": s.percent_bps, "fixed": s.fixed}
            for name, s in ctx.params.fee_schedules.items()
        ],
        schema={"gateway": pl.String(), "bps": pl.Int64(), "fixed": pl.Int64()},
    )
    lines = blines.join(schedules.lazy(), on="gateway", how="left").with_columns(
        pre_tax=pl.col("fee") - pl.col("tax"),
        contracted=pl.when((pl.col("type") == "charge") & pl.col("bps").is_not_null())
        .then(bps_of(pl.col("gross"), pl.col("bps")) + pl.col("fixed"))
        .otherwise(None),
    )
    off = (pl.col("pre_tax") - pl.col("contracted")).abs() > tolerance
    lines = lines.with_columns(mismatch=off.fill_null(False))
    lines = lines.with_columns(
        fee_expected=pl.when(pl.col("mismatch"))
        .then(pl.col("contracted"))
        .otherwise(pl.col("pre_tax"))
        + pl.when(pl.col("type") == "fee").then(-pl.col("gross")).otherwise(0)
    )
    per_gateway, mismatched = pl.collect_all(
        [
            lines.group_by("gateway").agg(
                fees=-pl.col("fee_expected").sum(),
                fee_lines=(pl.col("fee_expected") != 0).sum(),
                tax=-pl.col("tax").sum(),
                tax_lines=(pl.col("tax") != 0).sum(),
            ),
            lines.filter(pl.col("mismatch")),
        ]
    )
    return pl.concat(
        [
            make_rows(
                per_gateway.filter(pl.col("fee_lines") > 0).select(
                    "gateway",
                    amount=pl.col("fees"),
                    ref=pl.col("gateway"),
                    line_count=pl.col("fee_lines").cast(pl.Int64),
                    detail=pl.format("fees on {} lines", "fee_lines"),
                ),
                cause=Item.GATEWAY_FEES,
                stage="fees",
            ),
            make_rows(
                per_gateway.filter(pl.col("tax_lines") > 0).select(
                    "gateway",
                    amount=pl.col("tax"),
                    ref=pl.col("gateway"),
                    line_count=pl.col("tax_lines").cast(pl.Int64),
                    detail=pl.format("tax on fees of {} lines", "tax_lines"),
                ),
                cause=Item.FEE_TAX,
                stage="fees",
            ),
            make_rows(
                mismatched.select(
                    "gateway",
                    "payment_id",
                    amount=pl.col("contracted") - pl.col("pre_tax"),
                    ref=pl.col("line_id"),
                    gateway_line_ids=one("line_id"),
                    detail=pl.format(
                        "fee {} on {}, contracted {}",
                        ctx.money("pre_tax"),
                        ctx.money("gross"),
                        ctx.money("contracted"),
                    ),
                ),
                cause=Cause.FEE_MISMATCH,
                stage="fees",
            ),
        ]
    )


def unmatched_line_rows(blines: pl.LazyFrame, ctx: Context) -> pl.DataFrame:
    """Gateway lines no ledger entry can explain: adjustments (MISSING_IN_LEDGER) and types
    payrail does not know (UNEXPLAINED). Fee-type lines are handled by :func:`fee_rows`."""
    others = blines.filter(~pl.col("type").is_in([*MATCHABLE, "fee"])).collect()
    return make_rows(
        others.select(
            "gateway",
            "payment_id",
            amount=pl.col("gross"),
            ref=pl.col("line_id"),
            gateway_line_ids=one("line_id"),
            detail=pl.format(
                "gateway {} {} ({})",
                "type",
                ctx.money("gross"),
                pl.col("reporting_category").fill_null("-"),
            ),
            cause=pl.when(pl.col("type") == "adjustment")
            .then(pl.lit(Cause.MISSING_IN_LEDGER))
            .otherwise(pl.lit(Cause.UNEXPLAINED)),
        ),
        cause=pl.col("cause"),
        stage="ledger-gateway",
    )
