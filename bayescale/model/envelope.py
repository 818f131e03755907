"""The PyMC model of the training-curve envelope (Hoffmann et al. 2022, Approach 1), with its priors.

Each run's curve is smoothed by ``log L_r(D) = log(E_r + G_r (D / D_r)^-beta_r)``, D_r the
geometric mean of the run's checkpoint tokens, with AR(1) or independent residuals. The curves
are prepared by :mod:`bayescale.data.envelope`; the Laplace whitening and the method are in
:mod:`bayescale.methods.envelope`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from bayescale.data.envelope import CurveData
from bayescale.errors import PriorError
from bayescale.model.laws import ops as _ops
from bayescale.model.laws.base import Parameter
from bayescale.model.likelihoods import Correlation, ar1_innovations, check_correlation
from bayescale.model.priors import Prior, override_priors, support
from bayescale.model.pymc_model import RHO, SIGMA

G_AT_REF = Parameter(
    "G_at_ref",
    Prior("LogNormal", mu=-1.0, sigma=2.0),
    "the reducible loss at the run's mean tokens: median 0.37 nats, a factor 7.4 per sd",
    "G_r, each run's reducible loss at its geometric-mean tokens D_r (one per run)",
)
BETA = Parameter(
    "beta",
    Prior("LogNormal", mu=-1.0, sigma=0.6),
    "median 0.37, 90% in 0.14-0.99: wide about the data exponents of published laws (Chinchilla's 0.28)",
    "beta_r, the exponent of each run's curve in tokens (one per run)",
)

#: Parameters sampled as their log: their prior must be on (0, inf).
LOG_SCALE = ("G_at_ref", "beta", "sigma")

#: Sampled variables whose prior is not among :func:`default_priors`, with why.
NOT_OVERRIDABLE = {
    "E": "its prior is centred on each run's data: log E_r ~ N(the run's lowest log loss - 0.2, 0.5)",
}


def default_priors(correlation: Correlation = "ar1") -> dict[str, Parameter]:
    """The parameters of the envelope model with their default priors and reasons.

    Not listed: each run's irreducible loss ``E`` (posterior ``log_E``), whose prior is
    centred on the run's lowest loss: log E_r ~ N(lowest log loss - 0.2, 0.5).
    """
    check_correlation(correlation)
    params = (G_AT_REF, BETA, SIGMA) + ((RHO,) if correlation == "ar1" else ())
    return {p.name: p for p in params}


def resolve_priors(
    correlation: Correlation = "ar1", priors: Mapping[str, Prior | Mapping[str, Any]] | None = None
) -> dict[str, Prior]:
    """The default priors with ``priors`` in their place, each on the support it is sampled on.

    ``G_at_ref``, ``beta`` and ``sigma`` are sampled as their logs, so their priors must be on
    (0, inf) (LogNormal, HalfNormal, HalfStudentT, Gamma, Exponential, or TruncatedNormal with
    ``lower=0``); ``rho`` on the logit scale, so its prior must be on (0, 1) (Beta, or Uniform or
    TruncatedNormal with ``lower=0, upper=1``). PriorError otherwise, or for a name not in the model.
    """
    defaults = {name: p.prior for name, p in default_priors(correlation).items()}
    merged = override_priors(defaults, priors, not_overridable=NOT_OVERRIDABLE)
    for name, prior in merged.items():
        want = (0.0, 1.0) if name == "rho" else (0.0, np.inf)
        if support(prior) != want:
            scale = "logit" if name == "rho" else "log"
            raise PriorError(
                f"prior of {name!r} must be on ({want[0]:g}, {want[1]:g}), the values its {scale} scale "
                f"maps to; got {prior!r} on {support(prior)}"
            )
    return merged


def _n_coordinates(data: CurveData, correlation: Correlation) -> int:
    """Unconstrained coordinates: log E, log G, log beta per run, log sigma, and logit rho (AR(1))."""
    return 3 * data.grid_y.shape[0] + 1 + (correlation == "ar1")


def _log_e_prior_mean(data: CurveData) -> np.ndarray:
    """Prior mean of each run's log E: 0.2 below the lowest log loss the run reached."""
    return np.where(data.grid_mask, data.grid_y, np.inf).min(axis=1) - 0.2


def _log_scale_density(prior: Prior, x: Any, log_x: Any, ops: Any) -> Any:
    """Log density of ``log x`` when ``x`` has ``prior``: the density of x and the Jacobian ``log x``."""
    return prior.log_density(x, ops, log_x=log_x) + log_x


def _logit_scale_density(prior: Prior, x: Any, log_x: Any, ops: Any) -> Any:
    """Log density of ``logit x`` when ``x`` has ``prior``, Jacobian ``log x + log(1 - x)`` added."""
    return prior.log_density(x, ops, log_x=log_x) + log_x + ops.log1p(-x)


def build_model(
    data: CurveData,
    correlation: Correlation = "ar1",
    shift: np.ndarray | None = None,
    root: np.ndarray | None = None,
    priors: Mapping[str, Prior] | None = None,
) -> Any:
    """The PyMC model of every run's smoothed curve, with AR(1) or independent residuals.

    The sampler moves ``z`` with the unconstrained parameters ``x = shift + root @ z``
    (defaults: ``x = z``); :func:`laplace` gives the posterior mode and the Cholesky factor
    of its covariance, which make ``z`` near standard normal. The map is affine, so the
    posterior of the parameters is the same whatever ``shift`` and ``root`` are.
    ``priors``: the prior of every parameter of :func:`default_priors` (default: those defaults).
    """
    import pymc as pm
    import pytensor.tensor as pt

    if priors is None:
        priors = resolve_priors(correlation)  # (checks the correlation)
    else:
        check_correlation(correlation)
    ops = _ops.tensor()
    n_runs = data.grid_y.shape[0]
    size = _n_coordinates(data, correlation)
    shift = np.zeros(size) if shift is None else np.asarray(shift, dtype=float)
    root = np.eye(size) if root is None else np.asarray(root, dtype=float)
    mask = data.grid_mask.astype(float)
    first = np.arange(data.grid_y.shape[1]) == 0  # each run's first checkpoint (rows are left-aligned)
    coords = {"curve": data.curves.run_names}
    with pm.Model(coords=coords) as model:
        z = pm.Flat("z", shape=size)
        x = pt.as_tensor(shift) + pt.dot(pt.as_tensor(root), z)
        log_e, log_g, log_beta = x[:n_runs], x[n_runs : 2 * n_runs], x[2 * n_runs : 3 * n_runs]
        log_sigma = x[3 * n_runs]
        beta, sigma = pt.exp(log_beta), pt.exp(log_sigma)
        pm.Deterministic("log_E", log_e, dims="curve")
        pm.Deterministic("log_G_at_ref", log_g, dims="curve")
        pm.Deterministic("beta", beta, dims="curve")
        pm.Deterministic("sigma", sigma)
        # Priors on the unconstrained scale: each prior's density with the Jacobian of exp (and
        # below, of the logistic). log E_r below the lowest loss the run reached (E < L), weakly:
        # 90% within a factor 2.4; the others are the priors given (default_priors).
        log_prior = (
            pm.logp(pm.Normal.dist(_log_e_prior_mean(data), 0.5), log_e).sum()
            + _log_scale_density(priors["G_at_ref"], pt.exp(log_g), log_g, ops).sum()
            + _log_scale_density(priors["beta"], beta, log_beta, ops).sum()
            + _log_scale_density(priors["sigma"], sigma, log_sigma, ops)
        )
        mu = pt.logaddexp(log_e[:, None], log_g[:, None] - beta[:, None] * data.grid_u)
        resid = (data.grid_y - mu) * mask
        if correlation == "ar1":
            logit_rho = x[3 * n_runs + 1]
            rho = pm.Deterministic("rho", pm.math.sigmoid(logit_rho))
            log_prior += _logit_scale_density(priors["rho"], rho, pt.log(rho), ops)
            # each checkpoint's predecessor by slicing, not gathering (whose gradient is slower);
            # the first column's is not used
            prev = pt.concatenate([resid[:, :1], resid[:, :-1]], axis=1)
            innov, scale = ar1_innovations(resid, prev, first, rho, sigma, ops)
        else:
            innov, scale = resid, sigma
        pm.Potential("log_prior", log_prior)
        # The normal density of the innovations at the runs' checkpoints (padding is masked out:
        # after a run's last checkpoint its innovation is not 0). The scale varies by column only,
        # so its log is counted per column; a masked per-cell log density (likelihoods.log_density)
        # had 43% more flops in its value and gradient (XLA cost analysis, 8e4 points).
        sum_sq = ((innov / scale) ** 2 * mask).sum()
        log_det = (mask.sum(axis=0) * pt.log(scale)).sum()
        pm.Potential("log_loss", -0.5 * sum_sq - log_det - 0.5 * mask.sum() * np.log(2 * np.pi))
    return model
