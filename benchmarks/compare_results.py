"""Issue 35's closing measurements: extrapolation rows on one predictive, and the data-constrained defaults.

Run from the repository root (about half an hour on 2 busy cores)::

    PYTHONPATH=$PWD python benchmarks/compare_results.py [plan] [extrapolate]

1. ``extrapolate`` on the Chinchilla runs split at 1e21 FLOPs (chinchilla, kaplan) and on the
   datablations runs split at 10 epochs (data-constrained with the C4 Chinchilla part fixed, chinchilla):
   the law-alone and averaged rows, each scored on its own predictive draws.
2. The data-constrained law at its defaults on Muennighoff et al.'s 182 runs (C4 part fixed), against
   ``../shared/anchors/datablations/published.json``: R_D*, R_N* and the 1e22 FLOPs / 25e9 plan.
"""

import json
import time
from pathlib import Path

import pandas as pd

import bayescale as bs
from bayescale.checks.simulate import MUENNIGHOFF_C4

SEED = 2023
C4 = {k: MUENNIGHOFF_C4[k] for k in ("E", "A", "B", "alpha_N", "alpha_D")}
ANCHOR = Path(__file__).resolve().parents[1] / ".." / "shared" / "anchors" / "datablations"
pd.set_option("display.width", 200)
pd.set_option("display.max_columns", 30)


def show(title: str, frame: pd.DataFrame) -> None:
    print(f"\n## {title}\n{frame.to_string(float_format=lambda v: f'{v:.4g}')}", flush=True)


def backtest(runs: str, law: str, threshold: float, by: str, **kwargs: object) -> pd.DataFrame:
    start = time.time()
    e = bs.extrapolate(runs, law, threshold=threshold, by=by, random_seed=SEED, progressbar=False, **kwargs)
    d = e.fit.diagnostics
    print(
        f"{runs} {law} below {threshold:g} {by}: r_hat {d['max_r_hat']:.3f}, divergences {d['divergences']}, "
        f"{time.time() - start:.0f} s",
        flush=True,
    )
    return e.score_table()


def part_one() -> None:
    cols = [
        "law",
        "n_test",
        "elpd_test",
        "coverage",
        "coverage_50",
        "median_abs_pct_error",
        "interval_score",
        "fit_ok",
    ]
    chin = pd.concat([backtest("chinchilla", law, 1e21, "compute") for law in ("chinchilla", "kaplan")])
    show("Chinchilla runs, trained below 1e21 FLOPs, 23 held-out runs", chin[[c for c in cols if c in chin]])
    data = pd.concat(
        [
            backtest("datablations", "data-constrained", 10, "epochs", fix=C4),
            backtest("datablations", "chinchilla", 10, "epochs"),
        ]
    )
    show("datablations, trained below 10 epochs, 102 held-out runs", data[[c for c in cols if c in data]])


def part_two() -> None:
    published = json.loads((ANCHOR / "published.json").read_text())
    runs = pd.read_csv(ANCHOR / "final_losses_paper_fit_182.csv")
    runs = runs.rename(columns={"N": "params", "D": "tokens", "U": "unique_tokens"})
    runs = runs[["params", "tokens", "unique_tokens", "loss"]]
    start = time.time()
    fit = bs.fit(runs, law="data-constrained", fix=C4, random_seed=SEED, progressbar=False, warn=False)
    d = fit.diagnostics
    print(
        f"\n182 runs, data-constrained defaults (C4 part fixed, seed {SEED}): ok {d['ok']}, "
        f"r_hat {d['max_r_hat']:.3f}, divergences {d['divergences']}, {time.time() - start:.0f} s",
        flush=True,
    )
    table = fit.summary(prob=0.9)
    for name in ("R_D_star", "R_N_star", "nu", "sigma"):
        if name in table.index:
            row = table.loc[name]
            value = published["data_constrained"].get(name, float("nan"))
            print(
                f"{name}: {row['median']:.3g} [{row['lower']:.3g}, {row['upper']:.3g}]  published {value:.4g}"
            )
    target = published["readme_optimal_allocation"]
    for averaged in (False, True):
        plan = fit.optimal(target["C"], unique_tokens=target["U"], average_beyond=averaged).iloc[0]
        print(
            f"plan at {target['C']:.3g} FLOPs, U = {target['U']:.3g} "
            + f"({'averaged' if averaged else 'law alone'}): "
            + ", ".join(
                f"{q} {plan[q + '_median']:.3g} [{plan[q + '_lower']:.3g}, {plan[q + '_upper']:.3g}]"
                for q in ("epochs", "params", "tokens", "loss")
            )
            + f"; published {json.dumps(target)}",
            flush=True,
        )


if __name__ == "__main__":
    import sys

    parts = sys.argv[1:] or ["plan", "extrapolate"]
    if "plan" in parts:
        part_two()
    if "extrapolate" in parts:
        part_one()
