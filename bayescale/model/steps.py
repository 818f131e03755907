"""The PyMC model of Kaplan's L(N, S_min) on loss curves, with AR(1) or independent residuals.

Checkpoints of one run share its history: residuals on log loss are an AR(1) series within a
run (``correlation="ar1"``) unless told otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from bayescale.data.steps import StepsData
from bayescale.model.laws import ops as _ops
from bayescale.model.laws.base import Parameter
from bayescale.model.laws.kaplan_steps import BATCH_PARAMETERS, LAW_PARAMETERS, log_loss
from bayescale.model.likelihoods import (
    Correlation,
    Likelihood,
    ar1_innovations,
    check_correlation,
    pymc_noise,
)
from bayescale.model.priors import Prior
from bayescale.model.pymc_model import NU, RHO, SIGMA, check_likelihood


def default_priors(
    batch: bool, correlation: Correlation = "ar1", likelihood: Likelihood = "normal"
) -> dict[str, Parameter]:
    """The parameters of the model with their default priors and reasons."""
    params = LAW_PARAMETERS + (BATCH_PARAMETERS if batch else ()) + (SIGMA,)
    params += (RHO,) if correlation == "ar1" else ()
    params += (NU,) if likelihood == "student_t" else ()
    return {p.name: p for p in params}


def _normal_logp_of_log(prior: Prior, log_value: Any) -> Any:
    """Log density of ``log value`` under a prior on the value (LogNormal: a Normal on the log)."""
    import pymc as pm

    if prior.distribution == "LogNormal":
        return pm.logp(pm.Normal.dist(prior.kwargs["mu"], prior.kwargs["sigma"]), log_value)
    import pytensor.tensor as pt

    return pm.logp(getattr(pm, prior.distribution).dist(**prior.kwargs), pt.exp(log_value)) + log_value


def build_model(
    data: StepsData,
    priors: Mapping[str, Prior],
    correlation: Correlation = "ar1",
    likelihood: Likelihood = "normal",
) -> Any:
    """The PyMC model of L(N, S_min) on the curves, with AR(1) or independent residuals.

    Each amplitude is sampled as the log of its term at a reference point (the mean log N,
    the mean log S, the geometric-mean loss for B_crit) to remove its near-perfect posterior
    correlation with its exponent; the user's priors on N_c, S_c and B* are kept exactly
    (the Jacobian of the change of variables is added).
    """
    import pymc as pm
    import pytensor.tensor as pt

    check_correlation(correlation)
    check_likelihood(likelihood)
    ref_n, ref_s = float(data.log_params.mean()), float(data.log_steps.mean())
    ref_l = float(data.log_loss.mean())
    half = float(np.log(np.exp(ref_l) / 2))  # each term starts at half the typical loss
    coords = {"curve": data.curves.run_names, "point": np.arange(len(data.run))}
    with pm.Model(coords=coords) as model:
        alpha_n = priors["alpha_N"].create_variable("alpha_N")
        alpha_s = priors["alpha_S"].create_variable("alpha_S")
        z_n = pm.Flat("N_c_log_at_ref", initval=half)
        z_s = pm.Flat("S_c_log_at_ref", initval=half)
        # term = alpha (log X_c - ref): log X_c = ref + z / alpha, |d z / d log X_c| = alpha.
        log_nc = ref_n + z_n / alpha_n
        log_sc = ref_s + z_s / alpha_s
        pm.Potential("N_c_prior", _normal_logp_of_log(priors["N_c"], log_nc) - pt.log(alpha_n))
        pm.Potential("S_c_prior", _normal_logp_of_log(priors["S_c"], log_sc) - pt.log(alpha_s))
        pm.Deterministic("N_c", pt.exp(log_nc))
        pm.Deterministic("S_c", pt.exp(log_sc))
        theta: dict[str, Any] = {"alpha_N": alpha_n, "alpha_S": alpha_s, "log_N_c": log_nc, "log_S_c": log_sc}
        start = None
        if data.batch_fitted:
            alpha_b = priors["alpha_B"].create_variable("alpha_B")
            start_b = float(np.log(2e8)) - ref_l / 0.21
            # log B_crit at the reference loss; log B* = z + ref_l / alpha_B (unit Jacobian).
            z_b = pm.Flat("B_crit_log_at_ref", initval=start_b)
            log_bs = z_b + ref_l / alpha_b
            pm.Potential("B_star_prior", _normal_logp_of_log(priors["B_star"], log_bs))
            pm.Deterministic("B_star", pt.exp(log_bs))
            theta.update(alpha_B=alpha_b, log_B_star=log_bs)
            start = data.log_loss  # Newton starts at the observed loss, already near the fixed point
        mu = log_loss(theta, data.covariates, _ops.tensor(), log_start=start)
        sigma = priors["sigma"].create_variable("sigma")
        resid = data.log_loss - mu
        if correlation == "ar1":
            rho = priors["rho"].create_variable("rho")
            innov, scale = ar1_innovations(resid, resid[data.prev], data.first, rho, sigma, _ops.tensor())
        else:
            innov, scale = resid, sigma
        nu = priors["nu"].create_variable("nu") if likelihood == "student_t" else None
        noise = pymc_noise(likelihood, 0.0, scale, nu)
        pm.Potential("log_loss", pm.logp(noise, innov).sum())
    return model
