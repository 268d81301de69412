"""Write a synthetic month for the reconciliation benchmark.

    uv run python benchmarks/recon_generate.py --payments 1000000 --out .state/recon-bench

Writes ``payments``, ``refunds``, ``disputes``, ``gateway_lines`` and ``bank_lines`` as parquet,
``truth.csv`` (the seeded discrepancies: cause, ref) and ``params.json`` (period, currency,
as-of date, seed) into ``--out``. The month and its seeded discrepancies of every cause code
come from :mod:`reconciler.synthetic`; the same ``--seed`` writes the same files.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from reconciler.synthetic import generate


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--payments", type=int, default=1_000_000)
    parser.add_argument(
        "--per-code", type=int, default=25, help="seeded discrepancies per ledger-side code"
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=Path(".state/recon-bench"))
    args = parser.parse_args()

    started = time.perf_counter()
    month = generate(args.payments, seed=args.seed, per_code=args.per_code)
    args.out.mkdir(parents=True, exist_ok=True)
    frames = {
        "payments": month.inputs.payments,
        "refunds": month.inputs.refunds,
        "disputes": month.inputs.disputes,
        "gateway_lines": month.inputs.gateway_lines,
        "bank_lines": month.inputs.bank_lines,
    }
    for name, frame in frames.items():
        frame.write_parquet(args.out / f"{name}.parquet")
    month.truth.write_csv(args.out / "truth.csv")
    p = month.params
    (args.out / "params.json").write_text(
        json.dumps(
            {
                "payments": args.payments,
                "seed": args.seed,
                "period": str(p.period),
                "currency": p.currency,
                "as_of": p.as_of.isoformat(),
            },
            indent=2,
        )
    )
    rows = ", ".join(f"{name} {frame.height:,}" for name, frame in frames.items())
    elapsed = time.perf_counter() - started
    print(f"wrote {args.out} in {elapsed:.1f} s: {rows}; {month.truth.height} seeded discrepancies")


if __name__ == "__main__":
    main()
