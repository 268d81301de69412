"""Every seeded discrepancy of every code is found, with its code, on its row - and nothing else.

The same generator feeds the 1,000,000-payment benchmark (benchmarks/recon_run.py); here a
small month keeps the check in the unit suite.
"""

from __future__ import annotations

import polars as pl
import pytest

from reconciler.domain import Cause
from reconciler.engine import reconcile
from reconciler.synthetic import generate, score


@pytest.fixture(scope="module")
def scores() -> pl.DataFrame:
    month = generate(4_000, seed=11, per_code=6)
    result = reconcile(month.inputs, month.params)
    assert result.unexplained_unlinked == 0
    return score(result.discrepancies, month.truth)


def test_every_cause_code_is_seeded(scores: pl.DataFrame) -> None:
    assert set(scores["cause"]) == {str(code) for code in Cause}


def test_precision_and_recall_are_perfect_for_every_code(scores: pl.DataFrame) -> None:
    imperfect = scores.filter((pl.col("precision") < 1) | (pl.col("recall") < 1))
    assert imperfect.is_empty(), imperfect


def test_the_same_seed_gives_the_same_month() -> None:
    first, second = generate(300, seed=3, per_code=2), generate(300, seed=3, per_code=2)
    assert first.inputs.gateway_lines.equals(second.inputs.gateway_lines)
    assert first.inputs.bank_lines.equals(second.inputs.bank_lines)
    assert first.truth.equals(second.truth)
