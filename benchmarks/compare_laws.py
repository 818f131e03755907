"""Law comparison on the bundled data (issue 5): LOO and extrapolation, full-size fits.

Run from the repository root (about 10-20 minutes on 2 busy cores)::

    PYTHONPATH=$PWD python benchmarks/compare_laws.py [OUT_DIR]

Prints the tables quoted in the issue's closing note and saves every fit to OUT_DIR.
"""

import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

import bayescale as bs

SEED = 20260101
OUT = Path(sys.argv[1] if len(sys.argv) > 1 else "out/compare")
pd.set_option("display.width", 200)
pd.set_option("display.max_columns", 30)


def show(title, frame):
    print(f"\n## {title}\n{frame.to_string(float_format=lambda v: f'{v:.4g}')}", flush=True)


def fit_all(runs, laws, tag):
    fits = {}
    for law in laws:
        f = bs.fit(runs, law=law, random_seed=SEED, progressbar=False, warn=False)
        d = f.diagnostics
        print(
            f"{tag} {law}: divergences {d['divergences']}, max r_hat {d['max_r_hat']:.3f}, "
            f"min ESS {d['min_ess_bulk']:.0f}",
            flush=True,
        )
        f.save(OUT / f"{tag}_{law}.nc")
        fits[law] = f
    return fits


def loo_table(fits):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", bs.LooWarning)
        table = bs.compare(fits)
    for w in caught:
        print(f"LooWarning: {w.message}")
    return table.drop(columns="influential_runs")


def extrapolation_table(runs, laws, threshold, by, tag):
    results = {}
    for law in laws:
        r = bs.extrapolate(
            runs, law, threshold=threshold, by=by, random_seed=SEED, progressbar=False, warn=False
        )
        d = r.fit.diagnostics
        print(f"{tag} {law}: divergences {d['divergences']}, max r_hat {d['max_r_hat']:.3f}", flush=True)
        r.runs.to_csv(OUT / f"{tag}_{law}_runs.csv", index=False)
        results[law] = r
    table = pd.DataFrame([r.scores for r in results.values()]).set_index("law")
    table["stacking_weight"] = bs.extrapolation_weights(results)
    return table.sort_values("elpd_test", ascending=False)


OUT.mkdir(parents=True, exist_ok=True)
chin_laws = ["chinchilla", "kaplan", "kaplan-n", "kaplan-d"]
chinchilla = bs.Runs.from_any("chinchilla")
fits = fit_all(chinchilla, chin_laws, "chinchilla")
show("chinchilla runs (245): PSIS-LOO", loo_table(fits))
show(
    "chinchilla runs: fit below 1e21 FLOPs, test above",
    extrapolation_table(chinchilla, chin_laws, 1e21, "compute", "chinchilla_below_1e21"),
)

datablations = bs.Runs.from_any("datablations")
epochs = datablations.column("tokens") / datablations.column("unique_tokens")
dfits = fit_all(datablations, ["chinchilla", "data-constrained"], "datablations")
show("datablations runs (182): PSIS-LOO", loo_table(dfits))
loos = {k: bs.loo(f) for k, f in dfits.items()}
diff = loos["data-constrained"].loo_i.values - loos["chinchilla"].loo_i.values
for lo, hi in ((0, 4), (4, 40), (40, np.inf)):
    m = (epochs >= lo) & (epochs < hi) if lo else epochs < hi
    print(
        f"  epochs in [{lo}, {hi}): {m.sum()} runs, elpd_loo(data-constrained) - elpd_loo(chinchilla) = "
        f"{diff[m].sum():.1f} (se {np.sqrt(m.sum() * diff[m].var()):.1f})"
    )
show(
    "datablations: fit on runs with < 10 epochs, test on >= 10 epochs",
    extrapolation_table(
        datablations, ["chinchilla", "data-constrained"], 10, "epochs", "datablations_below_10ep"
    ),
)
