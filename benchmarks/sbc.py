"""Simulation-based calibration of every shipped law, and extrapolation coverage.

Usage (from the repository root)::

    PYTHONPATH=$PWD python benchmarks/sbc.py --sims 100 --out sbc.json
    PYTHONPATH=$PWD python benchmarks/sbc.py --laws chinchilla kaplan-n --sims 30 --draws 500

For each law: prior draws -> simulated ladder (bayescale.calibration.ladder) ->
fit on the smaller sizes with bayescale.fit -> rank of the truth per parameter
and for N_opt at 1e23 FLOPs; then uniformity tests of the ranks, the held-out
coverage of 90% predictive intervals and how many fits failed their diagnostics.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import bayescale as bs
from bayescale import calibration


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--laws", nargs="*", default=None, help="laws to check (default: all registered)")
    parser.add_argument("--sims", type=int, default=100)
    parser.add_argument("--draws", type=int, default=500)
    parser.add_argument("--tune", type=int, default=500)
    parser.add_argument("--chains", type=int, default=2)
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--out", default=None, help="write all results as JSON here")
    args = parser.parse_args()
    warnings.simplefilter("ignore", bs.FitWarning)
    report = {}
    for law in args.laws or bs.list_laws():
        start = time.perf_counter()
        result = calibration.sbc(
            law,
            args.sims,
            seed=args.seed,
            fit_kwargs={"draws": args.draws, "tune": args.tune, "chains": args.chains},
            progress=lambda line: print(line, flush=True),
        )
        table = result.uniformity(seed=args.seed)
        ranks = result.ranks
        summary = {
            "settings": result.settings,
            "seconds": time.perf_counter() - start,
            "rejected": result.rejected,
            "failed_diagnostics": int((~ranks["ok"].astype(bool)).sum()),
            "fits_with_divergences": int((ranks["divergences"] > 0).sum()),
            "coverage": result.coverage(),
            "uniformity": table.to_dict(orient="index"),
            "ranks": ranks.to_dict(orient="list"),
        }
        report[law] = summary
        print(
            f"\n== {law}: {args.sims} fits in {summary['seconds']:.0f}s, {result.rejected} rejected draws, "
            f"{summary['failed_diagnostics']} fits failed diagnostics"
        )
        print(table.round(3).to_string())
        print(f"held-out 90% coverage: {summary['coverage']}\n", flush=True)
        if args.out:
            with open(args.out, "w") as handle:
                json.dump(report, handle, indent=1, default=float)


if __name__ == "__main__":
    main()
