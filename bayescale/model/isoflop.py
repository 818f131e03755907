"""The PyMC model of IsoFLOP profiles (Hoffmann et al. 2022, Approach 2), with its default priors.

Within budget ``c`` the log loss is a bowl in ``x = log N`` with its vertex at ``x*_c``; the
vertices lie on the line ``x*_c = log k + a log C_c`` up to a scatter ``tau``. The runs and their
budgets are prepared by :mod:`bayescale.data.isoflop`; the method is :mod:`bayescale.methods.isoflop`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from bayescale.data.isoflop import IsoflopData
from bayescale.errors import BayescaleError
from bayescale.model.laws.base import Parameter
from bayescale.model.likelihoods import Likelihood, pymc_noise
from bayescale.model.priors import Prior, override_priors
from bayescale.model.pymc_model import NU, SIGMA

#: Shapes of one budget's profile of log loss against u = log N - log N*:
#: ``parabola`` k u^2 (Hoffmann et al.), ``skewed`` 2k (e^(s u) - 1 - s u) / s^2, which tends to
#: the parabola as s -> 0 and lets the loss rise faster on one side (large, under-trained models).
SHAPES = ("parabola", "skewed")


A = Parameter(
    "a",
    Prior("Normal", mu=0.5, sigma=0.3),
    "Hoffmann et al. found a = 0.49-0.50, Kaplan et al. 0.73; centred on 0.5, 90% in 0.0-1.0",
    "exponent of the optimal size: N_opt ∝ C^a",
)
X_CENTER = Parameter(
    "x_center",
    Prior("Normal", mu=0.0, sigma=3.0),
    "the optimum at the mean budget lies near the sizes run: sd 3 on log N (a factor 20 per sd)",
    "log N_opt at the mean log budget, relative to the runs' mean log N",
)
TAU = Parameter(
    "tau",
    Prior("HalfNormal", sigma=0.3),
    "0 when the budgets' optima lie on the power law exactly; scale 0.3 on log N (a factor 1.35)",
    "scatter of the budgets' log N_opt about the line",
)
LOG_CURVATURE = Parameter(
    "log_curvature",
    Prior("Normal", mu=math.log(0.05), sigma=1.5),
    "median 0.05: log loss 5% above the minimum a factor e from N_opt; sd 1.5 (a factor 4.5 per sd)",
    "log of each budget's profile curvature (one per budget)",
)
SKEW = Parameter(
    "skew",
    Prior("Normal", mu=0.0, sigma=2.0),
    "0 is the parabola; sd 2 lets the loss rise faster on either side (large, under-trained models)",
    "skewness s of the profiles (shape='skewed')",
)

#: Sampled variables whose prior is not among :func:`default_priors`, with why.
NOT_OVERRIDABLE = {
    "log_loss_opt": "its prior is centred on each budget's best run (data), N(best log loss, 1)",
    "vertex_z": "the budgets' standardised offsets from the line, N(0, 1) by construction (tau scales them)",
}


def default_priors(likelihood: Likelihood = "student_t", shape: str = "skewed") -> dict[str, Parameter]:
    """The parameters of the IsoFLOP model with their default priors and reasons.

    Not listed: ``log_loss_opt``, whose prior is centred on each budget's best run, and
    ``vertex_z``, the standard-normal offsets of the budgets' optima from the line.
    """
    params = (A, X_CENTER, TAU, LOG_CURVATURE) + ((SKEW,) if shape == "skewed" else ()) + (SIGMA,)
    params += (NU,) if likelihood == "student_t" else ()
    return {p.name: p for p in params}


#: Parameters whose prior must stay on positive values (they are scales).
POSITIVE = ("tau", "sigma", "nu")


def resolve_priors(
    likelihood: Likelihood = "student_t",
    shape: str = "skewed",
    priors: Mapping[str, Prior | Mapping[str, Any]] | None = None,
) -> dict[str, Prior]:
    """The default priors with ``priors`` in their place; PriorError for a name not in the model."""
    defaults = {name: p.prior for name, p in default_priors(likelihood, shape).items()}
    return override_priors(defaults, priors, POSITIVE, NOT_OVERRIDABLE)


def build_model(
    data: IsoflopData,
    likelihood: Likelihood = "student_t",
    shape: str = "skewed",
    priors: Mapping[str, Prior] | None = None,
) -> Any:
    """The PyMC model of the IsoFLOP profiles of ``data``.

    Coordinates are centred on the data (log N on its mean, log C on the mean
    over budgets) so the sampler sees parameters of order one. ``priors``: the prior
    of every parameter of :func:`default_priors` (default: those defaults).
    """
    import pymc as pm

    if shape not in SHAPES:
        raise BayescaleError(f"unknown profile shape {shape!r}; use one of {list(SHAPES)}")
    if priors is None:
        priors = resolve_priors(likelihood, shape)

    budgets = data.budgets[data.budgets["used"]].reset_index(drop=True)
    keep = data.used
    remap = {old: new for new, old in enumerate(np.flatnonzero(data.budgets["used"].to_numpy()))}
    idx = np.array([remap[v] for v in data.level[keep]])
    x = np.log(data.runs.column("params")[keep])
    y = np.log(data.runs.column("loss")[keep])
    log_c = np.log(budgets["budget"].to_numpy())
    x_mean, c_mean = float(x.mean()), float(log_c.mean())
    # Per-budget starting values: the best run of each budget.
    y_start = np.array([y[idx == b].min() for b in range(len(budgets))])
    coords = {"budget": np.arange(len(budgets)), "run": np.arange(int(keep.sum()))}
    with pm.Model(coords=coords) as model:
        # (the order the variables are created in fixes the draws at a seed: keep it)
        a = priors["a"].create_variable("a")
        x_center = priors["x_center"].create_variable("x_center")
        tau = priors["tau"].create_variable("tau")
        z = pm.Normal("vertex_z", 0.0, 1.0, dims="budget")
        vertex = x_center + a * (log_c - c_mean) + tau * z
        pm.Deterministic("log_params_opt", vertex + x_mean, dims="budget")
        log_loss_opt = pm.Normal("log_loss_opt", mu=y_start, sigma=1.0, dims="budget")
        log_curv = priors["log_curvature"].create_variable("log_curvature", dims="budget")
        curvature = pm.Deterministic("curvature", pm.math.exp(log_curv), dims="budget")
        u = x - x_mean - vertex[idx]
        if shape == "skewed":
            skew = priors["skew"].create_variable("skew")
            bowl = (pm.math.exp(skew * u) - 1.0 - skew * u) / skew**2 * 2.0
        else:
            bowl = u**2
        sigma = priors["sigma"].create_variable("sigma")
        mu = log_loss_opt[idx] + curvature[idx] * bowl
        nu = priors["nu"].create_variable("nu") if likelihood == "student_t" else None
        pymc_noise(likelihood, mu, sigma, nu, "log_loss", observed=y, dims="run")
        pm.Deterministic("log_k", x_center + x_mean - a * c_mean)
    return model
