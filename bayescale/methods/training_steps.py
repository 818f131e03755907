"""Kaplan et al. (2020) training-curve laws: L(N, S_min) and the critical batch size.

Kaplan et al. (sections 5 and 6) model the loss of a model of N parameters after S
optimiser steps at batch size B (in tokens) as

    L(N, S_min) = (N_c / N)^alpha_N + (S_c / S_min)^alpha_S                (eq. 5.6)

where S_min = S / (1 + B_crit(L) / B) is the least number of steps that reaches the same
loss (at a batch size far above the critical one, eq. 5.4) and the critical batch size is
a power of the loss only, B_crit(L) = B* / L^(1 / alpha_B) (eq. 5.3). The compute the same
loss needs at a batch size far below B_crit is C_min = C / (1 + B / B_crit(L)) (eq. 5.5).
Both follow McCandlish et al. (2018)'s trade-off (S / S_min - 1)(E / E_min - 1) = 1 between
steps S and tokens E = B S, with E_min = B_crit S_min.

Since B_crit depends on the loss, the loss at (N, S, B) is the fixed point of
L = L(N, S / (1 + B_crit(L) / B)); :func:`loss_at_steps` solves it by Newton's method
(unique: the right side falls as L rises). The numpy functions take fixed parameters
(:data:`KAPLAN_2020` holds the published ones); :func:`fit_steps` fits the law to loss
curves in PyMC, with B* and alpha_B when the runs differ in batch size. With one batch size
B_crit is not identified (it moves S_min by a factor that trades with S_c): the law is then
fitted with S_min = S, the steps as run, and the summary says so.

Checkpoints of one run share its history: as in :mod:`bayescale.methods.envelope`, residuals on log
loss are an AR(1) series within a run (``correlation="ar1"``) unless told otherwise.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import xarray as xr

from bayescale.data.curves import Curves
from bayescale.data.storage import table_from_dataset, table_to_dataset
from bayescale.errors import BayescaleError, RunsError, RunsWarning
from bayescale.inference import container
from bayescale.inference.sampling import SAMPLER_DEFAULTS as BASE_SAMPLER_DEFAULTS
from bayescale.inference.sampling import (
    SamplerConfig,
    SamplerSettings,
    resolve_sampler,
    resolve_seed,
    sample_checked,
)
from bayescale.methods import io
from bayescale.methods.saved import MethodResult, check_setting, with_data
from bayescale.model.laws import ops as _ops
from bayescale.model.laws.base import Parameter
from bayescale.model.laws.kaplan import KAPLAN_ALPHA_N, N_C
from bayescale.model.likelihoods import ar1_innovations, pymc_noise
from bayescale.model.priors import Prior, override_priors, priors_from_json, priors_to_json
from bayescale.model.pymc_model import NU, RHO, SIGMA, check_likelihood
from bayescale.posterior.intervals import AllocationAnswers, check_interval, interval_dict, interval_table
from bayescale.posterior.query import make_query

#: Kaplan et al. (2020): Table 3 fit of L(N, S_min) and the critical-batch fit of section 5.1
#: (N non-embedding parameters, loss in nats per token, batch size in tokens).
KAPLAN_2020: dict[str, float] = {
    "alpha_N": 0.077,
    "alpha_S": 0.76,
    "N_c": 6.5e13,
    "S_c": 2.1e3,
    "B_star": 2.0e8,
    "alpha_B": 0.21,
}

CORRELATIONS = ("ar1", "none")

#: Sampler settings of :func:`fit_steps` unless told otherwise (``sampler=`` or keywords).
SAMPLER_DEFAULTS: dict[str, Any] = {**BASE_SAMPLER_DEFAULTS, "target_accept": 0.9}

#: Runs whose batch sizes (tokens per step) differ by less than this factor count as one batch size.
MIN_BATCH_RATIO = 1.1

#: Newton iterations of the loss fixed point inside the sampler (each one squares the error).
MODEL_ITERATIONS = 8

ALPHA_S = Parameter(
    "alpha_S",
    Prior("LogNormal", mu=-0.5, sigma=0.7),
    "Kaplan's alpha_S is 0.76; median 0.61, 90% in 0.19-1.9 leaves room for other optimisers",
    "exponent of the steps term",
)
S_C = Parameter(
    "S_c",
    Prior("LogNormal", mu=7.65, sigma=3.0),
    "Kaplan's S_c is 2.1e3 steps (log 7.65); sd 3 on the log scale (a factor 20 per sd)",
    "critical number of steps (loss scale of the steps term)",
)
B_STAR = Parameter(
    "B_star",
    Prior("LogNormal", mu=19.1, sigma=3.0),
    "Kaplan's B* is 2e8 tokens (log 19.1); sd 3 on the log scale (a factor 20 per sd)",
    "critical batch size at loss 1 [tokens]",
)
ALPHA_B = Parameter(
    "alpha_B",
    Prior("LogNormal", mu=-1.56, sigma=0.5),
    "Kaplan's alpha_B is 0.21 (B_crit ~ L^-4.8); median 0.21, 90% in 0.09-0.48",
    "exponent of the critical batch size: B_crit = B* / L^(1/alpha_B)",
)
LAW_PARAMETERS = (KAPLAN_ALPHA_N, ALPHA_S, N_C, S_C)
BATCH_PARAMETERS = (B_STAR, ALPHA_B)


# ---------------------------------------------------------------------------------------------
# The formulas with fixed parameters (numpy)


def critical_batch(loss: Any, B_star: Any, alpha_B: Any) -> np.ndarray:
    """Kaplan's critical batch size ``B_crit(L) = B* / L^(1 / alpha_B)`` [tokens] (eq. 5.3)."""
    loss = np.asarray(loss, dtype=float)
    return np.asarray(B_star) * loss ** (-1.0 / np.asarray(alpha_B))


def min_steps(steps: Any, batch: Any, loss: Any, B_star: Any, alpha_B: Any) -> np.ndarray:
    """Least steps reaching ``loss``: ``S_min = S / (1 + B_crit(L) / B)`` (eq. 5.4).

    Parameters
    ----------
    steps, batch, loss
        Optimiser steps S, batch size B in tokens and the loss L reached (nats per token).
    B_star, alpha_B
        Parameters of :func:`critical_batch`.
    """
    return np.asarray(steps, dtype=float) / (1.0 + critical_batch(loss, B_star, alpha_B) / batch)


def min_compute(compute: Any, batch: Any, loss: Any, B_star: Any, alpha_B: Any) -> np.ndarray:
    """Least compute reaching ``loss``: ``C_min = C / (1 + B / B_crit(L))`` (eq. 5.5)."""
    return np.asarray(compute, dtype=float) / (
        1.0 + np.asarray(batch) / critical_batch(loss, B_star, alpha_B)
    )


def loss_at_min_steps(params: Any, steps_min: Any, theta: Mapping[str, Any] = KAPLAN_2020) -> np.ndarray:
    """``L(N, S_min) = (N_c / N)^alpha_N + (S_c / S_min)^alpha_S`` (eq. 5.6).

    Parameters
    ----------
    params, steps_min
        N and S_min; anything numpy broadcasts.
    theta
        ``alpha_N``, ``alpha_S``, ``N_c``, ``S_c`` (default: :data:`KAPLAN_2020`).
    """
    t = _theta(theta, batch=False)
    x = {
        "log_params": np.log(np.asarray(params, dtype=float)),
        "log_steps": np.log(np.asarray(steps_min, dtype=float)),
    }
    return np.exp(log_loss(t, x, _ops.NUMPY))


def loss_at_steps(
    params: Any, steps: Any, batch: Any = None, theta: Mapping[str, Any] = KAPLAN_2020, tol: float = 1e-12
) -> np.ndarray:
    """Loss after ``steps`` at batch size ``batch`` [tokens]: the fixed point of L = L(N, S_min(L)).

    With ``batch=None`` the steps are taken as S_min (a batch far above B_crit).
    ``theta`` holds ``alpha_N``, ``alpha_S``, ``N_c``, ``S_c`` and, with a batch,
    ``B_star`` and ``alpha_B``.
    """
    if batch is None:
        return loss_at_min_steps(params, steps, theta)
    t = _theta(theta, batch=True)
    log_n, log_s, log_b = (np.log(np.asarray(v, dtype=float)) for v in (params, steps, batch))
    x = {"log_params": log_n, "log_steps": log_s, "log_batch": log_b}
    # Start at the loss without the batch penalty (a lower bound) and iterate to convergence.
    start = log_loss(t, x, _ops.NUMPY, log_start=None)
    for _ in range(100):
        new = log_loss(t, x, _ops.NUMPY, log_start=start, iterations=1)
        if np.all(np.abs(new - start) < tol):
            return np.exp(new)
        start = new
    raise BayescaleError("the loss fixed point did not converge in 100 Newton steps; check the parameters")


def compute_efficient_exponents(alpha_N: Any, alpha_S: Any, alpha_B: Any) -> dict[str, Any]:
    """Exponents of the compute-efficient frontier implied by L(N, S_min) and B_crit (section 6.1).

    ``L ~ C_min^-alpha_C_min`` with ``alpha_C_min = 1 / (1/alpha_S + 1/alpha_B + 1/alpha_N)``,
    and ``N ~ C_min^(alpha_C_min/alpha_N)``, ``B ~ C_min^(alpha_C_min/alpha_B)``,
    ``S_min ~ C_min^(alpha_C_min/alpha_S)`` (the three sum to 1 since C_min = 6 N B S_min).
    """
    a_n, a_s, a_b = (
        v if isinstance(v, xr.DataArray) else np.asarray(v, float) for v in (alpha_N, alpha_S, alpha_B)
    )
    alpha_c = 1.0 / (1.0 / a_s + 1.0 / a_b + 1.0 / a_n)
    return {
        "alpha_C_min": alpha_c,
        "params": alpha_c / a_n,
        "batch": alpha_c / a_b,
        "steps": alpha_c / a_s,
    }


def compute_optimal(
    compute: Any, theta: Mapping[str, Any] = KAPLAN_2020, batch: Any = None, kappa: float = 6.0
) -> dict[str, Any]:
    """The compute-optimal model at budget(s) ``compute``, in closed form (Kaplan sec. 6, app. B).

    At a fixed budget the loss is least where the two terms of L(N, S_min) stand in the ratio
    ``alpha_N (N_c/N)^alpha_N = alpha_S (S_c/S_min)^alpha_S`` (set dL/dN = 0 with S_min = C /
    (kappa N B)), so ``L = (1 + alpha_N/alpha_S) (N_c/N)^alpha_N`` at the optimum (Kaplan's
    appendix B, equation number not checked). Writing N and S_min through L and C = kappa N B S_min gives
    ``L = (C / C_c)^-alpha_C`` and N, S_min, B as powers of C:

    * ``batch=None`` (B_crit fitted): ``compute`` is C_min, the compute at a batch far below
      B_crit, and B = B_crit(L) = B*/L^(1/alpha_B); ``1/alpha_C = 1/alpha_N + 1/alpha_S +
      1/alpha_B``, the frontier of :func:`compute_efficient_exponents` (Kaplan sec. 6.1; he
      fits N ∝ C_min^0.73 directly). Training at B = B_crit itself takes 2 S_min steps and 2 C_min.
    * ``batch=B`` (tokens per step, fixed): ``compute`` = kappa N B S and S_min = S (the law
      fitted at that one batch size); ``1/alpha_C = 1/alpha_N + 1/alpha_S``, so
      N ∝ C^(alpha_S/(alpha_N+alpha_S)) as for Chinchilla's law.

    Parameters
    ----------
    compute
        Budget(s) in FLOPs; numpy arrays or xarray (broadcast against ``theta``).
    theta
        ``alpha_N``, ``alpha_S``, ``N_c``, ``S_c`` and, without ``batch``, ``B_star``, ``alpha_B``.
    batch
        ``None``: Kaplan's C_min frontier with B_crit(L); a number: plan at that batch size.
    kappa
        FLOPs per parameter per token (Kaplan's C = 6 N B S).

    Returns
    -------
    dict
        ``params``, ``tokens`` (= C/(kappa N); E_min on the frontier), ``steps`` (S_min),
        ``batch`` (B_crit(L) on the frontier, else ``batch``), ``loss`` and ``alpha_C``.
    """
    t = _theta(theta, batch=batch is None)
    a_n, a_s = t["alpha_N"], t["alpha_S"]
    if batch is None:
        inv_b, log_scale = 1.0 / t["alpha_B"], t["log_B_star"]
    else:
        b = np.asarray(batch, dtype=float)
        if np.any(~np.isfinite(b)) or np.any(b <= 0):
            raise BayescaleError(f"batch must be finite and > 0 tokens per step, got {batch!r}")
        inv_b, log_scale = 0.0, np.log(b)
    # shares of the loss at the optimum: (N_c/N)^alpha_N = p_n L, (S_c/S_min)^alpha_S = p_s L
    log_p_n, log_p_s = np.log(a_s / (a_n + a_s)), np.log(a_n / (a_n + a_s))
    inv_c = 1.0 / a_n + 1.0 / a_s + inv_b
    log_c_c = np.log(kappa) + t["log_N_c"] + t["log_S_c"] + log_scale - log_p_n / a_n - log_p_s / a_s
    log_l = (log_c_c - np.log(compute)) / inv_c
    log_n = t["log_N_c"] - (log_p_n + log_l) / a_n
    params = np.exp(log_n)
    return {
        "params": params,
        "tokens": compute / (kappa * params),
        "steps": np.exp(t["log_S_c"] - (log_p_s + log_l) / a_s),
        "batch": np.exp(log_scale - inv_b * log_l),
        "loss": np.exp(log_l),
        "alpha_C": 1.0 / inv_c,
    }


def _theta(theta: Mapping[str, Any], batch: bool) -> dict[str, Any]:
    names = ["alpha_N", "alpha_S", "N_c", "S_c"] + (["B_star", "alpha_B"] if batch else [])
    missing = [n for n in names if n not in theta]
    if missing:
        raise BayescaleError(f"Kaplan's L(N, S) needs values for {missing}; got {sorted(theta)}")
    # xarray draws keep their dims (chain, draw); anything else becomes a float array
    out = {
        n: theta[n].astype(float) if isinstance(theta[n], xr.DataArray) else np.asarray(theta[n], float)
        for n in names
    }
    for n in names:
        if np.any(out[n] <= 0):
            raise BayescaleError(f"{n} must be > 0, got {theta[n]!r}")
    out["log_N_c"], out["log_S_c"] = np.log(out["N_c"]), np.log(out["S_c"])
    if batch:
        out["log_B_star"] = np.log(out["B_star"])
    return out


# ---------------------------------------------------------------------------------------------
# The mean, written once for numpy, xarray and PyTensor


def _softplus(x: Any, ops: SimpleNamespace) -> Any:
    """``log(1 + exp(x))`` without overflow."""
    return ops.maximum(x, 0.0) + ops.log1p(ops.exp(ops.minimum(x, -x)))


def log_loss(
    theta: Mapping[str, Any],
    x: Mapping[str, Any],
    ops: SimpleNamespace,
    log_start: Any = None,
    iterations: int = MODEL_ITERATIONS,
) -> Any:
    """Log of L(N, S_min): with ``log_batch`` in ``x``, the fixed point in B_crit(L).

    Parameters
    ----------
    theta
        ``alpha_N``, ``alpha_S``, ``log_N_c``, ``log_S_c`` and (with a batch)
        ``log_B_star``, ``alpha_B``.
    x
        ``log_params``, ``log_steps`` and optionally ``log_batch``.
    log_start
        Start of the Newton iterations on log L (e.g. the observed log loss);
        ``None`` returns the loss with S_min = S (no batch penalty).
    iterations
        Newton steps; each step is at most 1 in log loss, so a far start stays finite.
    """
    term_n = theta["alpha_N"] * (theta["log_N_c"] - x["log_params"])
    if log_start is None or "log_batch" not in x:
        return _ops.logsumexp([term_n, theta["alpha_S"] * (theta["log_S_c"] - x["log_steps"])], ops)
    inv_b = 1.0 / theta["alpha_B"]
    level = log_start
    for _ in range(iterations):
        # k = log(B_crit(L) / B); log S_min = log S - log(1 + B_crit / B).
        k = theta["log_B_star"] - inv_b * level - x["log_batch"]
        penalty = _softplus(k, ops)
        term_s = theta["alpha_S"] * (theta["log_S_c"] - x["log_steps"] + penalty)
        total = _ops.logsumexp([term_n, term_s], ops)
        residual = total - level
        # d total / d level = share of the steps term * alpha_S * sigmoid(k) * (-1/alpha_B) <= 0.
        slope = ops.exp(term_s - total) * theta["alpha_S"] * ops.exp(k - penalty) * (-inv_b) - 1.0
        step = residual / slope
        level = level - ops.maximum(ops.minimum(step, 1.0), -1.0)
    return level


# ---------------------------------------------------------------------------------------------
# Data


@dataclass(frozen=True)
class StepsData:
    """Curves prepared for the model: run index, log N, log steps, log batch, log loss, AR(1) links."""

    curves: Curves
    run: np.ndarray
    log_params: np.ndarray
    log_steps: np.ndarray
    log_batch: np.ndarray
    log_loss: np.ndarray
    prev: np.ndarray
    first: np.ndarray
    batch_fitted: bool
    batch_note: str
    kappa: float = 6.0

    @property
    def covariates(self) -> dict[str, np.ndarray]:
        """``log_params``, ``log_steps`` and (when B_crit is fitted) ``log_batch``."""
        out = {"log_params": self.log_params, "log_steps": self.log_steps}
        if self.batch_fitted:
            out["log_batch"] = self.log_batch
        return out


def _check_tokens_grow_with_steps(frame: pd.DataFrame) -> None:
    """Raise when tokens do not rise with steps within a run (a batch size would come out <= 0)."""
    for run, checkpoints in frame.groupby("run", sort=False):
        ordered = checkpoints.sort_values("step", kind="stable")
        tokens, steps = ordered["tokens"].to_numpy(dtype=float), ordered["step"].to_numpy(dtype=float)
        bad = np.flatnonzero(np.diff(tokens) <= 0)
        if bad.size:
            i = int(bad[0])
            raise RunsError(
                f"run {run!r}: tokens do not grow with steps (step {steps[i]:.10g} has {tokens[i]:.10g} "
                f"tokens, step {steps[i + 1]:.10g} has {tokens[i + 1]:.10g}; {bad.size} such pair(s)); "
                "check the step and tokens columns"
            )


def batch_sizes(curves: Curves) -> np.ndarray:
    """Batch size of each checkpoint in tokens: ``tokens / step``, or the ``batch_size`` column.

    Raises
    ------
    RunsError
        When the curves have neither a ``step`` nor a ``batch_size`` column.
    """
    frame = curves.frame
    if "step" in frame.columns:
        _check_tokens_grow_with_steps(frame)
        return curves.column("tokens") / curves.column("step")
    if "batch_size" in frame.columns:
        return curves.column("batch_size")
    raise RunsError(
        "Kaplan's L(N, S) needs optimiser steps: the curves need a 'step' column (batch size in "
        "tokens is then tokens / step) or a 'batch_size' column in tokens (steps are then "
        f"tokens / batch_size); found {list(frame.columns)}"
    )


def prepare(curves: Curves, critical_batch: bool | None = None, min_step: float = 0.0) -> StepsData:
    """Arrays of ``curves`` for :func:`fit_steps`, deciding whether B_crit can be fitted.

    Parameters
    ----------
    critical_batch
        ``True``: fit B* and alpha_B, an error when the runs share one batch size;
        ``False``: fit L(N, S) with S_min = S; ``None``: fit B_crit when the batch
        sizes differ by more than :data:`MIN_BATCH_RATIO`, else warn and fit L(N, S).
    min_step
        Checkpoints at fewer steps are left out (Kaplan's law describes the curve after
        the early transient).
    """
    batch = batch_sizes(curves)
    steps = curves.column("step") if "step" in curves.frame.columns else curves.column("tokens") / batch
    keep = steps >= min_step
    if not keep.all():
        frame = curves.frame.loc[keep].reset_index(drop=True)
        try:
            curves = Curves.from_frame(frame, source=f"{curves.source} (steps >= {min_step:g})")
        except RunsError as exc:
            raise RunsError(f"after leaving out checkpoints below step {min_step:g}: {exc}") from None
        batch, steps = batch[keep], steps[keep]
    ratio = float(batch.max() / batch.min())
    per_run = pd.Series(batch).groupby(curves.run_index()).median()
    if ratio >= MIN_BATCH_RATIO:
        fitted, note = (
            True,
            (
                f"batch sizes {batch.min():.3g}-{batch.max():.3g} tokens across "
                f"{per_run.round(-1).nunique()} levels: B* and alpha_B fitted"
            ),
        )
    else:
        note = (
            f"every checkpoint has batch size {np.median(batch):.3g} tokens (tokens / step): B_crit is "
            "not identified, so S_min = S (the steps as run) and B*, alpha_B are not fitted; "
            "curves at two or more batch sizes are needed for them"
        )
        if critical_batch:
            raise RunsError(f"cannot fit the critical batch size: {note}")
        if critical_batch is None:
            warnings.warn(note, RunsWarning, stacklevel=3)
        fitted = False
    if critical_batch is False:
        fitted = False
        note = "critical_batch=False: S_min = S (the steps as run), B*, alpha_B not fitted"
    return _steps_data(curves, np.log(batch), np.log(steps), fitted, note)


def _steps_data(
    curves: Curves, log_batch: np.ndarray, log_steps: np.ndarray, fitted: bool, note: str
) -> StepsData:
    """The arrays of :class:`StepsData` from the (kept) checkpoints and their log batch sizes and steps."""
    run = curves.run_index()
    first = np.r_[True, run[1:] != run[:-1]]
    # FLOPs per parameter per token: 6 unless the curves carry their own compute column
    flops_ratio = curves.column("compute") / (curves.column("params") * curves.column("tokens"))
    return StepsData(
        curves=curves,
        run=run,
        log_params=np.log(curves.column("params")),
        log_steps=log_steps,
        log_batch=log_batch,
        log_loss=np.log(curves.column("loss")),
        prev=np.where(first, 0, np.arange(len(run)) - 1),
        first=first,
        batch_fitted=fitted,
        batch_note=note,
        kappa=float(np.exp(np.mean(np.log(flops_ratio)))),
    )


# ---------------------------------------------------------------------------------------------
# Model


def default_priors(batch: bool, correlation: str = "ar1", likelihood: str = "normal") -> dict[str, Parameter]:
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
    correlation: str = "ar1",
    likelihood: str = "normal",
) -> Any:
    """The PyMC model of L(N, S_min) on the curves, with AR(1) or independent residuals.

    Each amplitude is sampled as the log of its term at a reference point (the mean log N,
    the mean log S, the geometric-mean loss for B_crit) to remove its near-perfect posterior
    correlation with its exponent; the user's priors on N_c, S_c and B* are kept exactly
    (the Jacobian of the change of variables is added).
    """
    import pymc as pm
    import pytensor.tensor as pt

    if correlation not in CORRELATIONS:
        raise BayescaleError(f"unknown correlation {correlation!r}; use one of {list(CORRELATIONS)}")
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


# ---------------------------------------------------------------------------------------------
# Fit


@dataclass(repr=False)
class StepsFit(MethodResult, AllocationAnswers):
    """Posterior of Kaplan's L(N, S_min) (and B_crit when identified) on loss curves.

    Attributes
    ----------
    idata
        ``xarray.DataTree`` (:mod:`~bayescale.inference.container`); posterior ``alpha_N``,
        ``alpha_S``, ``N_c``, ``S_c``,
        ``sigma`` (and ``B_star``, ``alpha_B``, ``rho``, ``nu`` when in the model).
    data
        The curves as arrays, with :attr:`StepsData.batch_note` saying whether B_crit was fitted.
    """

    title: ClassVar[str] = "Kaplan L(N, S_min) fit"

    idata: Any
    data: StepsData
    priors: dict[str, Prior]
    correlation: str
    likelihood: str
    sampler: SamplerConfig
    random_seed: int | None
    diagnostics: dict[str, Any]

    @property
    def posterior(self) -> xr.Dataset:
        """Posterior draws (dims ``chain``, ``draw``)."""
        return container.posterior(self.idata)

    @property
    def parameter_names(self) -> list[str]:
        """The law's parameters reported: alpha_N, alpha_S, N_c, S_c (+ B_star, alpha_B)."""
        return [p.name for p in LAW_PARAMETERS] + (
            [p.name for p in BATCH_PARAMETERS] if self.data.batch_fitted else []
        )

    def parameters(self, prob: float = 0.9, kind: str = "eti") -> dict[str, dict[str, float]]:
        """``{name: {"median", "lower", "upper"}}`` for every parameter of the law."""
        return {name: interval_dict(self.posterior[name], prob, kind) for name in self.parameter_names}

    def theta(self) -> dict[str, xr.DataArray]:
        """Draws of the law's parameters, keyed as the numpy functions want them."""
        return {name: self.posterior[name] for name in self.parameter_names}

    def compare_published(self, prob: float = 0.9, kind: str = "eti") -> pd.DataFrame:
        """Posterior intervals next to Kaplan et al.'s published values (:data:`KAPLAN_2020`)."""
        rows = []
        for name, iv in self.parameters(prob, kind).items():
            published = KAPLAN_2020[name]
            inside = iv["lower"] <= published <= iv["upper"]
            rows.append({"parameter": name, **iv, "kaplan_2020": published, "kaplan_inside": inside})
        return pd.DataFrame(rows)

    def predict(
        self, params: Any, steps: Any, batch: Any = None, prob: float = 0.9, kind: str = "eti"
    ) -> Any:
        """Mean loss at (N, S[, B]) with intervals, one row per query (B in tokens).

        Without a batch ``steps`` are S_min (a fit without B_crit: the steps at its batch size).
        """
        check_interval(prob, kind)
        n, s = np.broadcast_arrays(
            np.atleast_1d(np.asarray(params, float)), np.atleast_1d(np.asarray(steps, float))
        )
        query = {"params": n, "steps": s}
        x = {
            "log_params": xr.DataArray(np.log(n), dims="query"),
            "log_steps": xr.DataArray(np.log(s), dims="query"),
        }
        t: dict[str, Any] = dict(self.theta())
        t["log_N_c"], t["log_S_c"] = np.log(t["N_c"]), np.log(t["S_c"])
        if batch is not None and not self.data.batch_fitted:
            raise RunsError(f"a batch size was given but B_crit was not fitted: {self.data.batch_note}")
        if batch is not None:
            b = np.broadcast_to(np.asarray(batch, float), n.shape)
            query["batch"] = b
            x["log_batch"] = xr.DataArray(np.log(b), dims="query")
            t["log_B_star"] = np.log(t["B_star"])
            level = log_loss(t, x, _ops.NUMPY, log_start=None)
            level = log_loss(t, x, _ops.NUMPY, log_start=level, iterations=30)
        else:
            level = log_loss(t, x, _ops.NUMPY)
        draws = xr.Dataset({"loss": np.exp(level).transpose("chain", "draw", "query")})
        return interval_table(draws, prob, kind, xr.Dataset({k: ("query", v) for k, v in query.items()}))

    def critical_batch(self, loss: Any, prob: float = 0.9, kind: str = "eti") -> pd.DataFrame:
        """B_crit [tokens] at the given loss(es) with intervals; needs B* and alpha_B fitted."""
        if not self.data.batch_fitted:
            raise RunsError(f"B_crit was not fitted: {self.data.batch_note}")
        check_interval(prob, kind)
        level = xr.DataArray(np.atleast_1d(np.asarray(loss, float)), dims="query")
        draws = self.posterior["B_star"] * level ** (-1.0 / self.posterior["alpha_B"])
        query = xr.Dataset({"loss": level})
        return interval_table(xr.Dataset({"critical_batch": draws}), prob, kind, query)

    def compute_efficient(self, prob: float = 0.9, kind: str = "eti") -> dict[str, dict[str, float]]:
        """Intervals of the frontier exponents of :func:`compute_efficient_exponents`; needs alpha_B."""
        if not self.data.batch_fitted:
            raise RunsError(f"the compute-efficient exponents need alpha_B: {self.data.batch_note}")
        post = self.posterior
        exps = compute_efficient_exponents(post["alpha_N"], post["alpha_S"], post["alpha_B"])
        return {k: interval_dict(v, prob, kind) for k, v in exps.items()}

    def plan_batch(self) -> float | None:
        """The batch size :meth:`optimal` plans at: ``None`` on Kaplan's frontier (B_crit fitted).

        Without B_crit the law was fitted with S_min = S at the batch size the runs used, so
        the plan holds at that batch size only; it is that size (tokens per step).

        Raises
        ------
        RunsError
            When B_crit was not fitted but the runs used several batch sizes (``critical_batch=
            False`` on such curves): then no single batch size is the one the law describes.
        """
        if self.data.batch_fitted:
            return None
        batch = np.exp(self.data.log_batch)
        if batch.max() / batch.min() >= MIN_BATCH_RATIO:
            raise RunsError(
                f"no compute-optimal plan: the runs used batch sizes {batch.min():.3g}-{batch.max():.3g} "
                "tokens but B* and alpha_B were not fitted, so neither Kaplan's C_min frontier "
                "(needs B_crit) nor a plan at the runs' one batch size applies; fit with "
                "critical_batch=True (or None)"
            )
        return float(np.exp(np.mean(self.data.log_batch)))

    def exponent_draws(self) -> xr.Dataset:
        """Draws of ``a`` (N_opt ∝ C^a), ``b = 1 - a`` (D_opt ∝ C^b) and ``alpha_C`` (L ∝ C^-alpha_C).

        With B_crit: Kaplan's frontier, ``a = alpha_C / alpha_N`` with ``1/alpha_C = 1/alpha_N +
        1/alpha_S + 1/alpha_B``; at the runs' one batch size: ``a = alpha_S / (alpha_N + alpha_S)``.
        """
        frontier = self.plan_batch() is None  # raises first when there is no plan
        post = self.posterior
        inv_c = 1.0 / post["alpha_N"] + 1.0 / post["alpha_S"]
        if frontier:
            inv_c = inv_c + 1.0 / post["alpha_B"]
        a = (1.0 / inv_c) / post["alpha_N"]
        return xr.Dataset({"a": a, "b": 1.0 - a, "alpha_C": 1.0 / inv_c}).transpose("chain", "draw")

    def optimal_draws(self, compute: Any) -> xr.Dataset:
        """Draws of the compute-optimal model at each budget (dim ``query``), see :meth:`optimal`."""
        query = make_query(compute=compute)
        batch = self.plan_batch()
        best = compute_optimal(query["compute"], self.theta(), batch=batch, kappa=self.data.kappa)
        steps, batch_name = ("steps_min", "critical_batch") if batch is None else ("steps", "batch")
        out = xr.Dataset(
            {
                "params": best["params"],
                "tokens": best["tokens"],
                "tokens_per_param": best["tokens"] / best["params"],
                steps: best["steps"],
                batch_name: best["batch"],
                "loss": best["loss"],
            }
        )
        return out.transpose("chain", "draw", "query")

    def optimal(
        self, compute: Any, prob: float = 0.9, kind: str = "eti", *, random_seed: int | None = None
    ) -> pd.DataFrame:
        """The compute-optimal model at budget(s) ``compute`` [FLOPs] with intervals, one row each.

        ``random_seed`` is accepted as by ``Fit.optimal``: the answer draws no random numbers.

        Two cases, decided by the fit (:func:`compute_optimal` has the formulas):

        * B* and alpha_B fitted: Kaplan's compute-efficient frontier. ``compute`` is C_min
          (eq. 5.5: the compute at a batch far below B_crit); the columns are ``params``,
          ``tokens`` = E_min = C_min/(kappa N), ``steps_min``, ``critical_batch`` = B_crit(L)
          and ``loss``. Training at B = B_crit takes 2 S_min steps, 2 E_min tokens, 2 C_min.
        * One batch size B in the runs, B_crit not fitted: the plan at that batch size, the only
          one the fitted law describes (S_min = S there). ``compute`` = kappa N B S; the columns
          are ``params``, ``tokens``, ``steps``, ``batch`` (= B) and ``loss``. Whether another
          batch size would do better is not answered: that needs runs at several batch sizes.
          If B_crit(L) does vary with the loss, L(N, S) at one batch size is only approximate
          and so is this plan: on curves simulated from Kaplan's constants at B = 2.5e5 tokens
          the fitted a was 0.886 [0.869, 0.900] against 0.73 for the true plan at that B
          (``benchmarks/steps_one_batch.py``).

        Raises
        ------
        RunsError
            When B_crit was not fitted and the runs used several batch sizes (:meth:`plan_batch`).
        """
        return super().optimal(compute, prob, kind)

    def plan_note(self) -> str:
        """What :meth:`optimal` assumes, in one line."""
        batch = self.plan_batch()
        if batch is None:
            return "Kaplan's C_min frontier with fitted B_crit(L) (budget = C_min; at B = B_crit it costs 2x)"
        return f"at the runs' one batch size {batch:.3g} tokens/step (B_crit not identified, S_min = S)"

    def to_dict(self, prob: float = 0.9, kind: str = "eti") -> dict[str, Any]:
        """JSON-ready: the law's parameters, the batch note, noise and diagnostics."""
        out: dict[str, Any] = {
            "law": "L(N, S_min) = (N_c/N)^alpha_N + (S_c/S_min)^alpha_S (Kaplan et al. 2020, eq. 5.6)",
            "n_points": len(self.data.run),
            "n_runs": len(self.data.curves.run_names),
            "prob": prob,
            "priors": {name: prior.to_dict() for name, prior in sorted(self.priors.items())},
            "correlation": self.correlation,
            "likelihood": self.likelihood,
            "critical_batch_fitted": self.data.batch_fitted,
            "batch_note": self.data.batch_note,
            **self.parameters(prob, kind),
            "sigma": interval_dict(self.posterior["sigma"], prob, kind),
            "kaplan_2020": {k: KAPLAN_2020[k] for k in self.parameter_names},
        }
        if "rho" in self.posterior:
            out["rho"] = interval_dict(self.posterior["rho"], prob, kind)
        if self.data.batch_fitted:
            out["compute_efficient"] = self.compute_efficient(prob, kind)
        try:
            out["plan"] = self.plan_note()
            out.update(self.exponents(prob, kind))
        except RunsError as exc:  # several batch sizes without B_crit: no plan, say why
            out["plan"] = str(exc)
        out["diagnostics"] = {
            k: self.diagnostics[k] for k in ("divergences", "max_r_hat", "min_ess_bulk", "ok", "problems")
        }
        return out

    def saved_parts(self) -> tuple[Any, dict[str, Any]]:
        """The draws with the checkpoints fitted (dim ``checkpoint``) and their steps; the settings."""
        data = self.data
        const = table_to_dataset(data.curves.frame, data.curves.source, "checkpoint")
        const["_log_steps"] = ("checkpoint", data.log_steps)
        const["_log_batch"] = ("checkpoint", data.log_batch)
        observed = xr.Dataset({"log_loss": (("checkpoint",), data.log_loss)})
        settings = {
            "correlation": self.correlation,
            "likelihood": self.likelihood,
            "priors": priors_to_json(self.priors),
            "batch_fitted": data.batch_fitted,
            "batch_note": data.batch_note,
        }
        return with_data(self.idata, const, observed), settings

    @classmethod
    def from_saved(cls, idata: Any, settings: dict[str, Any], common: dict[str, Any]) -> StepsFit:
        """Rebuild a fit from :meth:`saved_parts`; TypeError for a setting of the wrong type."""
        check_setting("correlation", settings["correlation"], settings["correlation"] in CORRELATIONS)
        check_likelihood(settings["likelihood"])
        check_setting("batch_fitted", settings["batch_fitted"], isinstance(settings["batch_fitted"], bool))
        check_setting("batch_note", settings["batch_note"], isinstance(settings["batch_note"], str))
        const = container.group(idata, "constant_data")
        frame, source = table_from_dataset(const)
        data = _steps_data(
            Curves(frame=frame, source=source),
            np.asarray(const["_log_batch"].values, dtype=float),
            np.asarray(const["_log_steps"].values, dtype=float),
            settings["batch_fitted"],
            settings["batch_note"],
        )
        return cls(
            idata=idata,
            data=data,
            priors=priors_from_json(settings["priors"]),
            correlation=settings["correlation"],
            likelihood=settings["likelihood"],
            **common,
        )

    def _facts(self) -> dict[str, Any]:
        return {
            "data": self.data.curves.source,
            "curves": len(self.data.curves.run_names),
            "checkpoints": len(self.data.run),
            "batch": "B* and alpha_B fitted" if self.data.batch_fitted else "one batch size (S_min = S)",
            "residuals": f"{self.correlation}, {self.likelihood}",
        }

    def _intervals(self) -> dict[str, dict[str, float]]:
        return {**self.parameters(), "sigma": interval_dict(self.posterior["sigma"])}


io.register_result("steps", StepsFit)


def fit_steps(
    curves: Any,
    *,
    critical_batch: bool | None = None,
    correlation: str = "ar1",
    likelihood: str = "normal",
    priors: Mapping[str, Prior | Mapping[str, Any]] | None = None,
    min_step: float = 0.0,
    sampler: SamplerSettings | None = None,
    random_seed: int | None = None,
    progressbar: bool = True,
    warn: bool = True,
) -> StepsFit:
    """Fit Kaplan's L(N, S_min), and B_crit(L) when the runs differ in batch size, to loss curves.

    Parameters
    ----------
    curves
        :class:`~bayescale.data.curves.Curves`, a DataFrame, a CSV/Parquet path or a bundled
        curve data set, with ``run``, ``params``, ``tokens``, ``loss`` and ``step`` (or
        ``batch_size`` in tokens).
    critical_batch
        ``None`` (default): fit B* and alpha_B when the batch sizes (tokens / step) differ
        across checkpoints, else warn (:class:`~bayescale.errors.RunsWarning`) and fit
        L(N, S) with S_min = S; ``True``: require them (an error with one batch size);
        ``False``: never fit them.
    correlation
        ``"ar1"`` (default): residuals of one run are an AR(1) series; ``"none"``: independent.
    likelihood
        ``"normal"`` (default) or ``"student_t"`` innovations on log loss.
    priors
        Priors replacing the defaults (:func:`default_priors`), by parameter name.
    min_step
        Leave out checkpoints before this step.
    sampler, random_seed, progressbar
        Sampler settings, seed and progress bar (see :func:`bayescale.fit`); the sampler's
        defaults are :data:`SAMPLER_DEFAULTS`.
    warn
        Emit a :class:`~bayescale.inference.diagnostics.FitWarning` when diagnostics fail.

    Returns
    -------
    StepsFit
    """
    if correlation not in CORRELATIONS:
        raise BayescaleError(f"unknown correlation {correlation!r}; use one of {list(CORRELATIONS)}")
    check_likelihood(likelihood)
    curves_obj = Curves.from_any(curves)
    data = prepare(curves_obj, critical_batch, min_step)
    if data.curves.frame["params"].nunique() < 2:
        raise RunsError("L(N, S) needs curves of at least 2 model sizes")
    params = default_priors(data.batch_fitted, correlation, likelihood)
    merged = override_priors({name: p.prior for name, p in params.items()}, priors, ("N_c", "S_c", "B_star"))
    config = resolve_sampler(SAMPLER_DEFAULTS, sampler)
    free = [n for n in merged if n not in ("N_c", "S_c", "B_star")]
    free += ["N_c_log_at_ref", "S_c_log_at_ref"] + (["B_crit_log_at_ref"] if data.batch_fitted else [])
    model = build_model(data, merged, correlation, likelihood)
    random_seed = resolve_seed(random_seed)
    idata, report, ran = sample_checked(model, free, config, random_seed, progressbar, warn)
    return StepsFit(
        idata=idata,
        data=data,
        priors=merged,
        correlation=correlation,
        likelihood=likelihood,
        sampler=ran,
        random_seed=random_seed,
        diagnostics=report,
    )
