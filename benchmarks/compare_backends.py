"""Mixing of the JAX fast path against numpyro on the PyMC model, fit by fit (issue 7).

Usage::

    python benchmarks/compare_backends.py --settings quick --seeds 1-20
    python benchmarks/compare_backends.py --settings default --seeds 1-20 --bundled

Fits simulated 40-run Chinchilla ladders (``bayescale.checks.simulate.simulate_ladder``,
seed ``s``, ``random_seed=s``) and, with ``--bundled``, the bundled Chinchilla
runs and the datablations runs (Muennighoff et al.'s fixed coefficients, and
every parameter free) with each backend, and prints min bulk ESS, max r_hat,
divergences and wall time side by side, then a summary per backend.
``quick`` is ``QUICK`` of the tests (2 chains x 200 draws after 300 tuning
steps); ``default`` is 4 x 1000 after 1000.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bayescale.checks.simulate import MUENNIGHOFF_C4, TRUE_CHINCHILLA, simulate_ladder  # noqa: E402

QUICK = {"draws": 200, "tune": 300, "chains": 2}

import bayescale as bs  # noqa: E402

C4_CHINCHILLA = {k: MUENNIGHOFF_C4[k] for k in ("E", "A", "B", "alpha_N", "alpha_D")}


def cases(seeds: list[int], bundled: bool) -> list[tuple[str, dict]]:
    out = [
        (f"ladder-{s}", {"runs": simulate_ladder("chinchilla", TRUE_CHINCHILLA, seed=s), "random_seed": s})
        for s in seeds
    ]
    if bundled:
        out += [
            ("chinchilla", {"runs": "chinchilla", "random_seed": 20260101}),
            (
                "datablations-fixed",
                {
                    "runs": "datablations",
                    "law": "data-constrained",
                    "fix": {**C4_CHINCHILLA, "nu": 1.0},
                    "random_seed": 2023,
                },
            ),
            (
                "datablations-free",
                {"runs": "datablations", "law": "data-constrained", "random_seed": 20260101},
            ),
        ]
    return out


def parse_seeds(text: str) -> list[int]:
    seeds: list[int] = []
    for part in text.split(","):
        if "-" in part:
            a, b = part.split("-")
            seeds += range(int(a), int(b) + 1)
        elif part:
            seeds.append(int(part))
    return seeds


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--settings", choices=("quick", "default"), default="quick")
    parser.add_argument("--seeds", default="1-20", help="ladder seeds, e.g. 1-20 or 1,4,7")
    parser.add_argument(
        "--bundled", action="store_true", help="also fit the bundled chinchilla and datablations"
    )
    parser.add_argument("--backends", default="jax,numpyro")
    parser.add_argument("--json", type=Path, help="append one JSON line per fit to this file")
    args = parser.parse_args()
    sampler = dict(QUICK) if args.settings == "quick" else {}
    backends = args.backends.split(",")
    rows = []
    print(f"{'case':<20} " + " ".join(f"{b + ' ESS/r_hat/div/s':>30}" for b in backends), flush=True)
    for name, spec in cases(parse_seeds(args.seeds), args.bundled):
        spec = dict(spec)
        runs = spec.pop("runs")
        law = spec.pop("law", "chinchilla")
        cells = []
        for backend in backends:
            t = time.perf_counter()
            fit = bs.fit(
                runs, law=law, sampler={**sampler, "backend": backend}, progressbar=False, warn=False, **spec
            )
            wall = time.perf_counter() - t
            d = fit.diagnostics
            row = {
                "case": name,
                "settings": args.settings,
                "backend": fit.sampler.backend,
                "min_ess": round(d["min_ess_bulk"]),
                "max_r_hat": round(d["max_r_hat"], 4),
                "divergences": d["divergences"],
                "wall": round(wall, 1),
            }
            rows.append(row)
            if args.json:
                with args.json.open("a") as fh:
                    fh.write(json.dumps(row) + "\n")
            cells.append(f"{row['min_ess']:>8} {row['max_r_hat']:>8.4f} {row['divergences']:>4} {wall:>7.1f}")
        print(f"{name:<20} " + " ".join(f"{c:>30}" for c in cells), flush=True)
    print()
    for backend in backends:
        sub = [r for r in rows if r["case"].startswith("ladder") and r["backend"] == backend]
        if not sub:
            continue
        ess = [r["min_ess"] for r in sub]
        rhat = [r["max_r_hat"] for r in sub]
        print(
            f"{backend}: {len(sub)} ladders; min ESS median {statistics.median(ess):.0f} "
            f"(lowest {min(ess)}); "
            f"max r_hat median {statistics.median(rhat):.4f} (highest {max(rhat):.4f}, "
            f"{sum(h > 1.01 for h in rhat)} above 1.01); divergences {sum(r['divergences'] for r in sub)}; "
            f"median wall {statistics.median(r['wall'] for r in sub):.1f} s"
        )


if __name__ == "__main__":
    main()
