"""Run the full three-way reconciliation over a generated month and score it.

    uv run python benchmarks/recon_generate.py --payments 1000000 --out .state/recon-bench
    uv run python benchmarks/recon_run.py .state/recon-bench

Prints the wall time of loading the parquet files and of the run, the process's peak RSS, and
precision / recall per cause code against the seeded truth (a discrepancy counts as found only
with the right code on the right row). Exits non-zero when a target is missed: 30 s wall,
2 GiB peak RSS, precision and recall of 100 % for every code.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import polars as pl

from reconciler.engine import Inputs, reconcile
from reconciler.synthetic import params, score

WALL_TARGET_S = 30.0
RSS_TARGET_BYTES = 2 * 1024**3


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("folder", type=Path)
    args = parser.parse_args()

    started = time.perf_counter()
    inputs = Inputs(
        payments=pl.read_parquet(args.folder / "payments.parquet"),
        refunds=pl.read_parquet(args.folder / "refunds.parquet"),
        disputes=pl.read_parquet(args.folder / "disputes.parquet"),
        gateway_lines=pl.read_parquet(args.folder / "gateway_lines.parquet"),
        bank_lines=pl.read_parquet(args.folder / "bank_lines.parquet"),
    )
    loaded = time.perf_counter()
    result = reconcile(inputs, params())
    finished = time.perf_counter()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB

    truth = pl.read_csv(args.folder / "truth.csv")
    scores = score(result.discrepancies, truth)
    wall = finished - started
    print(
        f"payments {inputs.payments.height:,}  gateway lines {inputs.gateway_lines.height:,}  "
        f"bank lines {inputs.bank_lines.height:,}"
    )
    print(f"load {loaded - started:.2f} s  reconcile {finished - loaded:.2f} s  wall {wall:.2f} s")
    print(f"peak RSS {peak / 1024**2:,.0f} MiB")
    waterfall = result.waterfall
    print(f"waterfall {waterfall.start:,} -> {waterfall.end:,} {waterfall.currency}")
    for step in waterfall.steps:
        print(f"  {step.cause:<24} {step.amount:>16,}  ({step.rows} rows)")
    with pl.Config(tbl_rows=20, tbl_hide_dataframe_shape=True):
        print(scores)
    perfect = bool(scores["precision"].min() == 1.0 and scores["recall"].min() == 1.0)
    seeded = set(truth["cause"].unique())
    missing_codes = sorted(set(scores["cause"]) ^ seeded)
    ok = wall < WALL_TARGET_S and peak < RSS_TARGET_BYTES and perfect and not missing_codes
    print("targets met" if ok else f"TARGET MISSED (codes without truth or finds: {missing_codes})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
