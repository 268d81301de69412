"""Building blocks of the engine: reconciling-row frames and exact integer arithmetic.

Money never becomes a float, not even inside polars: conversions and percentages are done on
Int128 with explicit half-even rounding, then narrowed back to Int64 minor units.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import polars as pl

from payrail.money import exponent
from reconciler.domain import ROW_SCHEMA, Item, ReconcileParams

_I128 = pl.Int128()


def div_half_even(numerator: pl.Expr, denominator: pl.Expr) -> pl.Expr:
    """``round(numerator / denominator)`` with ties to even; ``denominator`` must be positive.

    Floor division gives ``0 <= remainder < denominator`` for either sign of the numerator,
    so one rule covers credits and debits alike.
    """
    n = numerator.cast(_I128)
    d = denominator.cast(_I128)
    q = n // d
    twice = (n - q * d) * 2
    up = (twice > d) | ((twice == d) & (q % 2 != 0))
    return pl.when(up).then(q + 1).otherwise(q).cast(pl.Int64)


def bps_of(amount: pl.Expr, bps: pl.Expr | int) -> pl.Expr:
    """``amount * bps / 10000``, rounded half-even (1 bp = 0.01 %)."""
    factor = bps.cast(_I128) if isinstance(bps, pl.Expr) else pl.lit(bps, _I128)
    return div_half_even(amount.cast(_I128) * factor, pl.lit(10_000, _I128))


def rate_table(rates: dict[str, Decimal], target: str) -> pl.DataFrame:
    """Reference rates as exact fractions: ``minor(target) = minor(src) * num / den``.

    Folding the currencies' exponents into the fraction keeps JPY -> USD or KWD -> EUR exact.
    """
    rows = []
    for currency, rate in rates.items():
        num, den = rate.as_integer_ratio()
        shift = exponent(target) - exponent(currency)
        if shift >= 0:
            num *= 10**shift
        else:
            den *= 10**-shift
        rows.append({"currency": currency, "rate_num": num, "rate_den": den})
    return pl.DataFrame(
        rows, schema={"currency": pl.String(), "rate_num": _I128, "rate_den": _I128}
    )


@dataclass(frozen=True)
class Context:
    """A run's parameters with the derived expressions every stage needs."""

    params: ReconcileParams

    @property
    def currency(self) -> str:
        return self.params.currency

    def local_date(self, column: str) -> pl.Expr:
        """The calendar date of a UTC timestamp column in the run's time zone."""
        return pl.col(column).dt.convert_time_zone(self.params.timezone).dt.date()

    def in_period(self, day: pl.Expr) -> pl.Expr:
        period = self.params.period
        return (day >= period.start) & (day < period.end)

    def business_days_after(self, day: pl.Expr, days: pl.Expr | int) -> pl.Expr:
        """``day`` plus ``days`` business days (a weekend start rolls forward first)."""
        holidays = list(self.params.settlement.holidays)
        return day.dt.add_business_days(days, holidays=holidays, roll="forward")

    def money(self, column: str) -> pl.Expr:
        """``column`` (minor units of the run currency) as text in major units."""
        return money_text(pl.col(column), exponent(self.currency))

    def aged(self, expected_by: pl.Expr) -> pl.Expr:
        """Past its settlement date as of the run's clock: no longer just timing."""
        # Column on the left: polars 2.1 evaluates ``lit > col`` to a single value when the
        # column is a broadcast constant (e.g. every line due the same day).
        return expected_by < pl.lit(self.params.clock)


def money_text(amount: pl.Expr, digits: pl.Expr | int) -> pl.Expr:
    """Minor units as a major-unit string (``-1220.50``) for the rows' human-readable detail."""
    exp = pl.lit(digits, pl.Int64()) if isinstance(digits, int) else digits.cast(pl.Int64())
    scale = pl.lit(10, pl.Int64()).pow(exp)
    whole = (amount.abs() // scale).cast(pl.String())
    fraction = (amount.abs() % scale).cast(pl.String()).str.zfill(exp)
    sign = pl.when(amount < 0).then(pl.lit("-")).otherwise(pl.lit(""))
    return (
        pl.when(exp == 0)
        .then(amount.cast(pl.String()))
        .otherwise(pl.concat_str([sign, whole, pl.lit("."), fraction]))
    )


def one(column: str) -> pl.Expr:
    """A list holding ``column``'s value, or an empty list when it is null."""
    return pl.concat_list(pl.col(column)).list.drop_nulls()


def make_rows(frame: pl.DataFrame, *, cause: str | pl.Expr, stage: str) -> pl.DataFrame:
    """Complete ``frame`` to :data:`ROW_SCHEMA`: missing links become empty lists, missing
    scalars null, ``line_count`` 1 unless given; ``kind`` follows the cause."""
    cause_expr = pl.lit(cause) if isinstance(cause, str) else cause
    staged = frame.with_columns(cause_expr.cast(pl.String()).alias("cause"))
    exprs: list[pl.Expr] = []
    for column, dtype in ROW_SCHEMA.items():
        if column == "kind":
            expected = pl.col("cause").is_in([str(item) for item in Item])
            exprs.append(
                pl.when(expected)
                .then(pl.lit("expected"))
                .otherwise(pl.lit("discrepancy"))
                .alias("kind")
            )
        elif column == "stage":
            exprs.append(pl.lit(stage, pl.String()).alias("stage"))
        elif column in staged.columns:
            exprs.append(pl.col(column).cast(dtype).alias(column))
        elif isinstance(dtype, pl.List):
            exprs.append(pl.lit([], dtype=dtype).alias(column))
        elif column == "line_count":
            exprs.append(pl.lit(1, pl.Int64()).alias(column))
        else:
            exprs.append(pl.lit(None, dtype=dtype).alias(column))
    return staged.select(exprs)


def empty_rows() -> pl.DataFrame:
    return pl.DataFrame(schema=dict(ROW_SCHEMA))
