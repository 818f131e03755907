"""Gemstones Approach 2 (IsoFLOP points read off the curves) without the budgets whose minimum
the sizes run do not bracket: by rank (Porian et al.'s rule: budget 1's best is its largest size)
and also the budgets whose fitted vertex lies at or beyond the largest size run (0, 6, 7).

    PYTHONPATH=$PWD nice -n 10 python benchmarks/gemstones_isoflop_edges.py
"""

import warnings

import numpy as np

import bayescale as bs
from bayescale.methods.isoflop import fit_isoflop, prepare
from bayescale.methods.side_by_side import isoflop_from_curves

warnings.simplefilter("ignore")
pts = isoflop_from_curves(bs.datasets.load_curves("gemstones"))
level = prepare(pts).level
for name, drop in [("rank edge (budget 1)", [1]), ("edge or extrapolated (0,1,6,7)", [0, 1, 6, 7])]:
    # bracketed=False: the budgets left out are chosen here (the default would also drop 0, 6, 7)
    fit = fit_isoflop(
        pts.subset(~np.isin(level, drop)), bracketed=False, random_seed=1, progressbar=False, warn=False
    )
    d = fit.diagnostics
    a = fit.exponents()["a"]
    print(
        f"{name:32s} a {a['median']:.3f} [{a['lower']:.3f}, {a['upper']:.3f}] div {d['divergences']} "
        f"r_hat {d['max_r_hat']:.4f} ESS {d['min_ess_bulk']:.0f} budgets {len(fit.budgets)}",
        flush=True,
    )
