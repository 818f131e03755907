"""How far the one-batch-size plan of Kaplan's L(N, S) is off when B_crit(L) does matter (issue 9).

Curves are simulated from Kaplan et al.'s constants (``KAPLAN_2020``, B_crit(L) = B*/L^(1/alpha_B))
at ONE batch size; the fit then cannot see B_crit and plans at that batch size with S_min = S
(``StepsFit.optimal``). The true plan at that batch size is found numerically: the N whose loss
``loss_at_steps(N, C / (6 N B), B)`` is least. Run from the repository root (~1 min)::

    PYTHONPATH=$PWD python benchmarks/steps_one_batch.py
"""

import warnings

import numpy as np
from scipy.optimize import minimize_scalar

from bayescale.checks.simulate import simulate_curves
from bayescale.methods import training_steps as ts

BUDGETS = (1e18, 1e20)


def true_params(compute: float, batch: float) -> float:
    """N with the least loss at ``compute`` FLOPs and a fixed batch size (Kaplan's world)."""

    def loss(log_n: float) -> float:
        n = np.exp(log_n)
        return float(ts.loss_at_steps(n, compute / (6 * n * batch), batch))

    best = minimize_scalar(
        loss, bounds=(np.log(1e6), np.log(1e12)), method="bounded", options={"xatol": 1e-9}
    )
    return float(np.exp(best.x))


for batch in (2.5e5, 2e6):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = ts.fit_steps(
            simulate_curves(seed=3, batches=(batch,)), random_seed=1, progressbar=False, warn=False
        )
    a = fit.exponents()["a"]
    local_a = np.log(true_params(1e19, batch) / true_params(1e18, batch)) / np.log(10)
    print(
        f"batch {batch:.3g}: fitted a {a['median']:.3f} [{a['lower']:.3f}, {a['upper']:.3f}]; "
        f"true plan's local a (1e18-1e19) {local_a:.3f}; diagnostics ok {fit.diagnostics['ok']}"
    )
    table = fit.optimal(list(BUDGETS))
    for c, row in zip(BUDGETS, table.to_dict("records"), strict=True):
        print(
            f"  C {c:.0e}: fitted N_opt {row['params_median']:.3g} "
            f"[{row['params_lower']:.3g}, {row['params_upper']:.3g}], true {true_params(c, batch):.3g}"
        )
