"""datablations: chinchilla vs data-constrained, Chinchilla coefficients fixed at Muennighoff's C4 fit.

Run from the repository root: PYTHONPATH=$PWD python benchmarks/compare_datablations_fixed.py
"""

import warnings

import bayescale as bs
from bayescale.checks.simulate import MUENNIGHOFF_C4

c4 = {k: MUENNIGHOFF_C4[k] for k in ("E", "A", "B", "alpha_N", "alpha_D")}
fits = {}
for law in ("chinchilla", "data-constrained"):
    f = bs.fit("datablations", law=law, fix=c4, random_seed=20260101, progressbar=False, warn=False)
    d = f.diagnostics
    print(law, "divergences", d["divergences"], "max r_hat", round(d["max_r_hat"], 3), flush=True)
    fits[law] = f
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always", bs.LooWarning)
    t = bs.compare(fits)
print(t.drop(columns="influential_runs").to_string(float_format=lambda v: f"{v:.4g}"))
for w in caught:
    print("LooWarning:", w.message)
