"""Gateway net -> payouts that landed -> what the bank received.

Payouts (settlements) are matched to bank lines N:1: first on references - the payout id,
the settlement's UTR / ACH trace id, found among the bank line's references, end-to-end id or
the words of its description, compared case-insensitively - then, for what is left, on amount
and date within the run's tolerances, one payout to one line and finally the payouts of one
gateway and day together against one line.

A payout *lands* on the booking date of its bank line, or on the gateway's arrival date while
no bank line is matched. Lines of the period whose payout did not land in the period are
TIMING_UNSETTLED until their settlement date passes the run's clock, then MISSING_IN_BANK;
lines of a failed payout that no later payout re-paid are PAYOUT_FAILED.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from reconciler.domain import Cause, Item
from reconciler.rows import Context, bps_of, make_rows, one

#: Bank transaction codes that mean "the bank charged you" (ISO 20022 sub-family codes,
#: SWIFT MT940 transaction types) and, failing a code, description words saying the same.
CHARGE_CODES = ("CHRG", "COMM", "FEES", "NCHG", "NCOM", "BCHG", "CHG", "FEE")
CHARGE_WORDS = r"(?i)\b(bank charges?|service charges?|account fees?|commission|charges?)\b"
_WORD = r"[A-Za-z0-9_\-]{6,}"


@dataclass(frozen=True)
class SettlementStage:
    rows: pl.DataFrame
    payouts_landed: int
    bank_received: int
    matches: pl.DataFrame  # payout_id, bank_line_id, method, bank_amount, payout_amount
    payouts: int
    bank_lines: int
    unknown_payout_lines: int  # lines naming a payout the report does not contain
    unlinked_failures: int  # payout_failure lines that do not say which payout failed


def _payouts(lines: pl.DataFrame, ctx: Context) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The period's payouts (all dates, in the run currency) and failed -> re-paid-by map."""
    scoped = lines.filter(pl.col("currency") == ctx.currency)
    failures = scoped.filter(pl.col("type") == "payout_failure").select(
        failed=pl.col("source_id"), repaid_by=pl.col("payout_id"), failure_line=pl.col("line_id")
    )
    payouts = (
        scoped.filter(pl.col("type") == "payout")
        .select(
            "gateway",
            payout_id=pl.coalesce("payout_id", "source_id", "line_id"),
            payout_line=pl.col("line_id"),
            amount=-pl.col("net"),
            arrival=ctx.local_date("available_on").fill_null(pl.col("day")),
            reference=pl.col("settlement_reference"),
        )
        .unique("payout_id", keep="first", maintain_order=True)
        .with_columns(failed=pl.col("payout_id").is_in(failures["failed"].drop_nulls().implode()))
    )
    return payouts, failures


def _bank(bank_lines: pl.DataFrame, ctx: Context) -> pl.DataFrame:
    return (
        bank_lines.filter(pl.col("currency") == ctx.currency)
        .with_row_index("bi")
        .with_columns(in_period=ctx.in_period(pl.col("booking_date")))
    )


def _hits(bank: pl.DataFrame, payouts: pl.DataFrame) -> pl.DataFrame:
    """(bi, payout_id) for every bank line naming a payout by id or settlement reference."""
    tokens = pl.concat_list(
        pl.col("references"),
        one("end_to_end_id"),
        pl.col("description").fill_null("").str.extract_all(_WORD),
    )
    bank_keys = (
        bank.select("bi", key=tokens)
        .explode("key")
        .drop_nulls("key")
        .with_columns(key=pl.col("key").str.strip_chars().str.to_uppercase())
        .unique()
    )
    payout_keys = (
        pl.concat(
            [
                payouts.select("payout_id", key=pl.col("payout_id")),
                payouts.select("payout_id", key=pl.col("reference")),
            ]
        )
        .drop_nulls("key")
        .with_columns(key=pl.col("key").str.to_uppercase())
        .unique()
    )
    return bank_keys.join(payout_keys, on="key").select("bi", "payout_id").unique()


def _within(ctx: Context, payout_amount: pl.Expr, bank_amount: pl.Expr) -> pl.Expr:
    """Same sign, amount within tolerance (absolute or basis points, whichever allows more)."""
    tol = ctx.params.tolerances
    diff = (bank_amount - payout_amount).abs()
    return (payout_amount.sign() == bank_amount.sign()) & (
        (diff <= tol.amount_abs) | (diff <= bps_of(payout_amount.abs(), tol.amount_bps))
    )


def _near(ctx: Context, a: pl.Expr, b: pl.Expr) -> pl.Expr:
    holidays = list(ctx.params.settlement.holidays)
    lo = pl.min_horizontal(a, b)
    hi = pl.max_horizontal(a, b)
    days = pl.business_day_count(lo, hi, holidays=holidays)
    return days <= ctx.params.tolerances.date_window_days


def _greedy(candidates: pl.DataFrame) -> pl.DataFrame:
    """One-to-one assignment, closest amount first then closest date: candidates are few
    (what references could not match), so a plain greedy pass is enough and deterministic."""
    used_units: set[str] = set()
    used_lines: set[int] = set()
    chosen: list[dict[str, object]] = []
    ordered = candidates.sort("amount_gap", "day_gap", "unit", "bi")
    for row in ordered.iter_rows(named=True):
        if row["unit"] in used_units or row["bi"] in used_lines:
            continue
        used_units.add(row["unit"])
        used_lines.add(row["bi"])
        chosen.append({"unit": row["unit"], "bi": row["bi"]})
    return pl.DataFrame(chosen, schema={"unit": pl.String(), "bi": pl.UInt32()})


def _fallback(units: pl.DataFrame, pool: pl.DataFrame, ctx: Context) -> pl.DataFrame:
    """Match payout units (unit, amount, arrival) to bank lines by amount and date."""
    if units.is_empty() or pool.is_empty():
        return pl.DataFrame(schema={"unit": pl.String(), "bi": pl.UInt32()})
    candidates = (
        units.join(pool.select("bi", "booking_date", bank_amount=pl.col("amount")), how="cross")
        .filter(
            _within(ctx, pl.col("amount"), pl.col("bank_amount"))
            & _near(ctx, pl.col("arrival"), pl.col("booking_date"))
        )
        .with_columns(
            amount_gap=(pl.col("bank_amount") - pl.col("amount")).abs(),
            day_gap=(pl.col("booking_date") - pl.col("arrival")).dt.total_days().abs(),
        )
    )
    return _greedy(candidates)


def _match_bank(
    payouts: pl.DataFrame, bank: pl.DataFrame, ctx: Context
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """``matches`` (payout_id, bi, method) and ``claims`` (bi, payout_id, claim) where claim is
    ``duplicate`` (names a payout another line already matched) or ``failed`` (names a failed
    payout, or a payout with the opposite sign: the bank returned it)."""
    hits = (
        _hits(bank, payouts)
        .join(payouts.select("payout_id", "amount", "failed"), on="payout_id")
        .join(bank.select("bi", "booking_date", "line_id", bank_amount=pl.col("amount")), on="bi")
    )
    good = ~pl.col("failed") & (pl.col("amount").sign() == pl.col("bank_amount").sign())
    by_reference = (
        hits.filter(good)
        .sort("booking_date", "line_id")
        .unique("payout_id", keep="first", maintain_order=True)
        .select("payout_id", "bi", method=pl.lit("reference"))
    )
    claims = pl.concat(
        [
            hits.filter(good)
            .join(by_reference.select("bi"), on="bi", how="anti")
            .select("bi", "payout_id", claim=pl.lit("duplicate")),
            hits.filter(~good)
            .join(hits.filter(good).select("bi"), on="bi", how="anti")
            .select("bi", "payout_id", claim=pl.lit("failed")),
        ]
    )
    pool = bank.join(hits.select("bi").unique(), on="bi", how="anti")
    open_payouts = payouts.filter(~pl.col("failed")).join(by_reference, on="payout_id", how="anti")
    single = _fallback(
        open_payouts.select(
            unit=pl.col("payout_id"), amount=pl.col("amount"), arrival=pl.col("arrival")
        ),
        pool,
        ctx,
    )
    by_amount = single.select(
        payout_id=pl.col("unit"), bi=pl.col("bi"), method=pl.lit("amount_date")
    )
    open_payouts = open_payouts.join(by_amount, on="payout_id", how="anti")
    groups = (
        open_payouts.group_by("gateway", "arrival")
        .agg(pl.col("payout_id"), amount=pl.col("amount").sum())
        .filter(pl.col("payout_id").list.len() > 1)
        .with_columns(unit=pl.format("{}|{}", "gateway", "arrival"))
    )
    grouped = _fallback(
        groups.select("unit", "amount", "arrival"), pool.join(single, on="bi", how="anti"), ctx
    )
    by_group = (
        grouped.join(groups.select("unit", "payout_id"), on="unit")
        .explode("payout_id")
        .select("payout_id", "bi", method=pl.lit("amount_date_group"))
    )
    return pl.concat([by_reference, by_amount, by_group]), claims


def settle(
    blines: pl.LazyFrame, lines: pl.DataFrame, bank_lines: pl.DataFrame, ctx: Context
) -> SettlementStage:
    """Rows from the gateway's net activity of the period to the bank's total of the period.

    ``blines`` are the period's balance lines in the run currency (no payouts), ``lines`` every
    report line (payouts of any date), ``bank_lines`` every bank line (any date: a match after
    the period tells "settled late" from "missing").
    """
    payouts, failures = _payouts(lines, ctx)
    bank = _bank(bank_lines, ctx)
    matches, claims = _match_bank(payouts, bank, ctx)
    payouts = (
        payouts.join(
            matches.join(bank.select("bi", "booking_date"), on="bi").select(
                "payout_id", "booking_date"
            ),
            on="payout_id",
            how="left",
        )
        .with_columns(
            matched=pl.col("booking_date").is_not_null(),
            landing=pl.coalesce("booking_date", "arrival"),
        )
        .with_columns(
            lands=~pl.col("failed") & ctx.in_period(pl.col("landing")),
            settle_by=ctx.business_days_after(
                pl.col("arrival"), ctx.params.tolerances.date_window_days
            ),
        )
    )
    bank_of = matches.join(bank.select("bi", bank_line_id=pl.col("line_id")), on="bi").select(
        "payout_id", "bank_line_id"
    )
    rows = [
        *_bank_rows(payouts, bank, matches, claims, ctx),
        *_line_rows(blines, payouts, failures, bank_of, ctx),
    ]
    bank_rows = bank.filter(pl.col("in_period"))
    report = matches.join(
        payouts.select("payout_id", payout_amount=pl.col("amount")), on="payout_id"
    ).join(bank.select("bi", bank_line_id=pl.col("line_id"), bank_amount=pl.col("amount")), on="bi")
    return SettlementStage(
        rows=pl.concat(rows),
        payouts_landed=int(payouts.filter(pl.col("lands"))["amount"].sum()),
        bank_received=int(bank_rows["amount"].sum()),
        matches=report.select(
            "payout_id", "bank_line_id", "method", "payout_amount", "bank_amount"
        ),
        payouts=payouts.height,
        bank_lines=bank_rows.height,
        unknown_payout_lines=blines.filter(
            pl.col("payout_id").is_not_null()
            & ~pl.col("payout_id").is_in(payouts["payout_id"].implode())
            & ~pl.col("payout_id").is_in(failures["failed"].drop_nulls().implode())
        )
        .select(pl.len())
        .collect()
        .item(),
        unlinked_failures=failures["failed"].null_count(),
    )


def _overdue_or_timing(overdue: pl.Expr) -> pl.Expr:
    """Money not in the bank: MISSING_IN_BANK once ``overdue`` (past its settlement date, as
    of the run's clock), TIMING_UNSETTLED until then."""
    return (
        pl.when(overdue)
        .then(pl.lit(Cause.MISSING_IN_BANK))
        .otherwise(pl.lit(Cause.TIMING_UNSETTLED))
    )


def _count(ids: str) -> pl.Expr:
    """How many ids the list column ``ids`` holds (a row's ``line_count``)."""
    return pl.col(ids).list.len().cast(pl.Int64)


def _bank_rows(
    payouts: pl.DataFrame,
    bank: pl.DataFrame,
    matches: pl.DataFrame,
    claims: pl.DataFrame,
    ctx: Context,
) -> list[pl.DataFrame]:
    """Payouts that landed in the period -> the bank's lines of the period."""
    in_period = bank.filter(pl.col("in_period"))
    matched = (
        matches.join(payouts.select("payout_id", "amount"), on="payout_id")
        .group_by("bi")
        .agg(pl.col("payout_id"), pl.col("method").first(), payouts_total=pl.col("amount").sum())
        .join(in_period, on="bi")
        .with_columns(diff=pl.col("amount") - pl.col("payouts_total"))
    )
    claimed = (
        claims.group_by("bi")
        .agg(pl.col("payout_id"), pl.col("claim").first())
        .join(in_period, on="bi")
    )
    free = in_period.join(matches.select("bi"), on="bi", how="anti").join(
        claims.select("bi"), on="bi", how="anti"
    )
    charge = (pl.col("amount") < 0) & (
        pl.col("bank_code").fill_null("").str.to_uppercase().is_in(CHARGE_CODES)
        | pl.col("description").fill_null("").str.contains(CHARGE_WORDS)
    )
    bank_links = {"ref": pl.col("line_id"), "bank_line_ids": one("line_id")}
    missing = payouts.filter(
        ~pl.col("failed") & ~pl.col("matched") & ctx.in_period(pl.col("arrival"))
    )
    return [
        make_rows(
            matched.filter(pl.col("diff") != 0).select(
                amount=pl.col("diff"),
                payout_ids=pl.col("payout_id"),
                detail=pl.format(
                    "bank {} for payouts of {} ({})",
                    ctx.money("amount"),
                    ctx.money("payouts_total"),
                    "method",
                ),
                cause=pl.when(pl.col("diff") < 0)
                .then(pl.lit(Cause.BANK_CHARGE))
                .otherwise(pl.lit(Cause.AMOUNT_MISMATCH)),
                **bank_links,
            ),
            cause=pl.col("cause"),
            stage="bank",
        ),
        make_rows(
            claimed.select(
                amount=pl.col("amount"),
                payout_ids=pl.col("payout_id"),
                detail=pl.when(pl.col("claim") == "duplicate")
                .then(pl.format("bank {} again for an already matched payout", ctx.money("amount")))
                .otherwise(
                    pl.format("bank {} for a failed or returned payout", ctx.money("amount"))
                ),
                cause=pl.when(pl.col("claim") == "duplicate")
                .then(pl.lit(Cause.DUPLICATE))
                .otherwise(pl.lit(Cause.PAYOUT_FAILED)),
                **bank_links,
            ),
            cause=pl.col("cause"),
            stage="bank",
        ),
        make_rows(
            free.select(
                amount=pl.col("amount"),
                detail=pl.format(
                    "bank {} {} not matched",
                    pl.col("bank_code").fill_null("-"),
                    pl.col("description").fill_null(""),
                ),
                cause=pl.when(charge)
                .then(pl.lit(Cause.BANK_CHARGE))
                .otherwise(pl.lit(Cause.UNEXPLAINED)),
                **bank_links,
            ),
            cause=pl.col("cause"),
            stage="bank",
        ),
        make_rows(
            missing.select(
                "gateway",
                amount=-pl.col("amount"),
                ref=pl.col("payout_id"),
                payout_ids=one("payout_id"),
                gateway_line_ids=one("payout_line"),
                expected_by=pl.col("settle_by"),
                detail=pl.format(
                    "payout {} due {} not in the bank", ctx.money("amount"), "arrival"
                ),
                cause=_overdue_or_timing(ctx.aged(pl.col("settle_by"))),
            ),
            cause=pl.col("cause"),
            stage="bank",
        ),
    ]


def _line_rows(
    blines: pl.LazyFrame,
    payouts: pl.DataFrame,
    failures: pl.DataFrame,
    bank_of: pl.DataFrame,
    ctx: Context,
) -> list[pl.DataFrame]:
    """The period's gateway net -> the payouts that landed in the period. ``bank_of`` maps a
    payout to the bank line it was matched with."""
    window = ctx.params.settlement
    repaid = failures.drop_nulls("failed").unique("failed", keep="first")
    linked = (
        blines.select("line_id", "gateway", "net", "payout_id", "day", "international")
        .join(
            repaid.lazy().select(payout_id=pl.col("failed"), repaid_by=pl.col("repaid_by")),
            on="payout_id",
            how="left",
        )
        .with_columns(
            first_failed=pl.col("payout_id").is_in(repaid["failed"].implode()).fill_null(False),
        )
        .with_columns(
            effective=pl.when(pl.col("first_failed"))
            .then(pl.col("repaid_by"))
            .otherwise(pl.col("payout_id"))
        )
        .join(
            payouts.lazy().select(
                effective=pl.col("payout_id"),
                found=pl.lit(True),
                effective_failed=pl.col("failed"),
                lands=pl.col("lands"),
                matched=pl.col("matched"),
                settle_by=pl.col("settle_by"),
            ),
            on="effective",
            how="left",
        )
        .with_columns(
            pl.col("found").fill_null(False),
            pl.col("lands").fill_null(False),
            failed=pl.col("first_failed") | pl.col("effective_failed").fill_null(False),
        )
    )
    open_lines = linked.filter(~pl.col("lands"))
    settled_sums, failed, in_flight, unpaid = pl.collect_all(
        [
            linked.filter(pl.col("lands")).group_by("effective").agg(in_period=pl.col("net").sum()),
            open_lines.filter(pl.col("failed"))
            .group_by("payout_id", "gateway")
            .agg(pl.col("line_id"), amount=-pl.col("net").sum()),
            open_lines.filter(~pl.col("failed") & pl.col("found"))
            .group_by("effective", "gateway")
            .agg(
                pl.col("line_id"),
                pl.col("matched").first(),
                pl.col("settle_by").first(),
                amount=-pl.col("net").sum(),
            ),
            open_lines.filter(~pl.col("failed") & ~pl.col("found")).with_columns(
                settle_by=ctx.business_days_after(
                    pl.col("day"),
                    pl.when(pl.col("international"))
                    .then(window.international_days)
                    .otherwise(window.domestic_days),
                )
            ),
        ]
    )
    carried = (
        payouts.filter(pl.col("lands"))
        .join(bank_of, on="payout_id", how="left")
        .join(settled_sums, left_on="payout_id", right_on="effective", how="left")
        .with_columns(carry=pl.col("amount") - pl.col("in_period").fill_null(0))
        .filter(pl.col("carry") != 0)
    )
    aged = ctx.aged(pl.col("settle_by"))
    return [
        make_rows(
            carried.select(
                "gateway",
                amount=pl.col("carry"),
                ref=pl.col("payout_id"),
                payout_ids=one("payout_id"),
                bank_line_ids=one("bank_line_id"),
                detail=pl.format(
                    "payout {} landed {}; {} of it from other periods",
                    ctx.money("amount"),
                    "landing",
                    ctx.money("carry"),
                ),
            ),
            cause=Item.PRIOR_PERIOD_SETTLED,
            stage="settlement",
        ),
        make_rows(
            failed.select(
                "gateway",
                "amount",
                ref=pl.col("payout_id"),
                payout_ids=one("payout_id"),
                gateway_line_ids=pl.col("line_id"),
                line_count=_count("line_id"),
                detail=pl.format(
                    "{} of the period's money in failed payout {}", ctx.money("amount"), "payout_id"
                ),
            ),
            cause=Cause.PAYOUT_FAILED,
            stage="settlement",
        ),
        make_rows(
            in_flight.select(
                "gateway",
                "amount",
                ref=pl.col("effective"),
                payout_ids=one("effective"),
                gateway_line_ids=pl.col("line_id"),
                line_count=_count("line_id"),
                expected_by=pl.col("settle_by"),
                detail=pl.format(
                    "payout {} lands after the period (due {})", "effective", "settle_by"
                ),
                cause=_overdue_or_timing(aged & ~pl.col("matched")),
            ),
            cause=pl.col("cause"),
            stage="settlement",
        ),
        make_rows(
            unpaid.select(
                "gateway",
                amount=-pl.col("net"),
                ref=pl.col("line_id"),
                gateway_line_ids=one("line_id"),
                expected_by=pl.col("settle_by"),
                detail=pl.format("not paid out yet; due by {}", "settle_by"),
                cause=_overdue_or_timing(aged),
            ),
            cause=pl.col("cause"),
            stage="settlement",
        ),
    ]
