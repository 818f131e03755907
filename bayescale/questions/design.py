"""Which run to train next: rank candidate runs by expected information about the plan.

Method (expected posterior variance by importance reweighting)
---------------------------------------------------------------
The target is ``q = log`` of a plan quantity (``params``, ``tokens`` or
``loss`` of the optimal allocation) at the target budget, one value ``q_s``
per posterior draw ``s``. For a candidate run x = (N, D[, U]):

1. simulate ``outcomes`` results of the run from the posterior predictive:
   pick a draw s' at random and add run-to-run noise to the law's log loss,
   ``y = mu_{s'}(x) + sigma_{s'} eps`` (Student-t or Gaussian, as fitted);
2. for each simulated ``y``, the posterior after also observing the run is the
   current posterior reweighted by the likelihood, ``w_s ∝ p(y | theta_s)``
   (importance sampling with the current posterior as proposal), and its
   variance of ``q`` is the weighted variance;
3. the expected posterior variance is the mean over the simulated outcomes; the
   expected reduction is the current variance minus it, reported also per FLOP
   of the run's cost.

Limits. Reweighting cannot move mass to where the current posterior has no
draws: a very informative candidate collapses the weights onto few draws and
its expected variance is then estimated from few effective samples (biased low,
so its reduction is overstated and noisy). ``ess_min`` (smallest effective
sample size over the simulated outcomes, as a fraction of the draws) says when
to distrust a row; below ~0.05 refit with the run's predicted outcome instead.
Weighted variances carry the reliability-weights correction 1 / (1 - sum w^2).
The method also trusts the law: a run that would reveal the law is wrong scores
by what it says about the law's parameters only.

Cost. Dividing one run's reduction by its cost favours any cheap run, even a
copy of a tiny run the posterior already pins down, though no number of such
copies can teach the extrapolation a large run teaches. The default ranking
therefore compares candidates at equal spend: the experiment budget (default:
the dearest candidate's cost) buys floor(budget / cost) replicates of each
candidate, whose average log loss has noise scale sigma / sqrt(replicates).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import xarray as xr
from scipy.special import logsumexp

from bayescale.data.columns import MIN_RATIO_SPREAD, duplicate_of, off_ratio_candidates
from bayescale.data.runs import read_table
from bayescale.data.schema import FLOPS_PER_PARAM_TOKEN, canonical_columns
from bayescale.errors import BayescaleError
from bayescale.model.laws import ScalingLaw, ops
from bayescale.model.likelihoods import Likelihood, log_density
from bayescale.model.pymc_model import check_likelihood, draw_log_noise
from bayescale.posterior.intervals import SAMPLE_DIMS
from bayescale.posterior.query import make_query
from bayescale.questions.allocation import _log_loss, _theta_arrays, optimal_allocation_draws

if TYPE_CHECKING:
    from bayescale.posterior.protocol import FitLike as Fit

QUANTITIES = ("params", "tokens", "loss")
#: Ranking criteria of :func:`expected_variance_reduction` and the column each sorts by.
RANK_BY = {"budget": "reduction_at_budget", "per_flop": "reduction_per_flop", "run": "reduction"}


def _positive(value: Any, name: str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise BayescaleError(f"{name} must be a number > 0, got {value!r}") from None
    if not np.isfinite(number) or number <= 0:
        raise BayescaleError(f"{name} must be a finite number > 0, got {value!r}")
    return number


def _expected_variance(
    q: np.ndarray,
    mu: np.ndarray,
    theta: Mapping[str, np.ndarray],
    likelihood: Likelihood,
    replicates: int,
    outcomes: int,
    rng: np.random.Generator,
) -> tuple[float, float, float]:
    """Expected weighted variance of ``q`` after observing ``replicates`` runs at one point.

    Replicates enter through their average log loss, modelled with the fitted
    noise at scale sigma / sqrt(replicates) (exact for Gaussian noise, an
    approximation for Student-t). Returns the expected variance and the mean
    and smallest effective sample size of the weights, as fractions of the draws.
    """
    scale = {**theta, "sigma": theta["sigma"] / np.sqrt(replicates)}
    pick = rng.integers(q.size, size=outcomes)
    noise = draw_log_noise(rng, likelihood, {k: v[0, pick] for k, v in scale.items()}, (outcomes, 1))
    y = mu[0, pick][:, None] + noise  # (outcomes, 1)
    log_w = _log_likelihood(y, mu, scale, likelihood)  # (outcomes, draws)
    w = np.exp(log_w - logsumexp(log_w, axis=1, keepdims=True))
    mean = w @ q
    sum_w2 = np.sum(w**2, axis=1)
    # Unbiased weighted variance (reliability weights): the plain one is low by 1 - 1/ESS.
    variance = np.maximum(w @ q**2 - mean**2, 0.0) / np.maximum(1.0 - sum_w2, 1e-12)
    ess = 1.0 / sum_w2 / q.size
    return float(np.mean(variance)), float(np.mean(ess)), float(np.min(ess))


def _log_likelihood(
    y: np.ndarray, mu: np.ndarray, theta: Mapping[str, np.ndarray], likelihood: Likelihood
) -> Any:
    """Log density of log-loss outcomes ``y`` (outcomes, 1) under each draw (1, draws)."""
    sigma = theta["sigma"]
    return log_density(likelihood, (y - mu) / sigma, sigma, theta.get("nu"), ops.NUMPY)


def expected_variance_reduction(
    law: ScalingLaw,
    theta: Mapping[str, xr.DataArray],
    likelihood: Likelihood,
    compute: float,
    candidates: pd.DataFrame,
    unique_tokens: float | None = None,
    quantity: str = "params",
    outcomes: int = 256,
    random_seed: int | None = None,
    flops_per_param_token: float = FLOPS_PER_PARAM_TOKEN,
    budget: float | None = None,
    rank_by: str = "budget",
) -> pd.DataFrame:
    """Rank candidate runs by expected reduction of the variance of log ``quantity`` at the target.

    Parameters
    ----------
    law, theta, likelihood
        The law, posterior draws of every parameter (including ``sigma`` and,
        for ``student_t``, ``nu``) with dims ``chain``, ``draw``, and the
        noise model.
    compute, unique_tokens
        The target budget (and unique data available) the plan is made for.
    candidates
        One row per candidate run: ``params``, ``tokens``, ``unique_tokens``
        (laws modelling repetition) and optionally ``cost`` in FLOPs (default
        k N D).
    quantity
        ``params`` (default: log N_opt), ``tokens`` or ``loss`` of the optimal
        allocation.
    outcomes
        Simulated results per candidate.
    budget
        Experiment budget in FLOPs for the equal-spend comparison (default:
        the cost of the dearest candidate): each candidate is credited with
        ``replicates`` = floor(budget / cost) runs at its point.
    rank_by
        ``"budget"`` (default: expected reduction when the budget is spent on
        replicates of the candidate, a per-FLOP comparison that knows repeats
        of one point have diminishing returns), ``"per_flop"`` (reduction of
        one run divided by its cost) or ``"run"`` (reduction of one run).

    Returns
    -------
    pandas.DataFrame
        One row per candidate, best first: its inputs, ``cost``,
        ``variance_now``, ``variance_after`` (expected, after one run),
        ``reduction``, ``reduction_per_flop``, ``replicates``,
        ``reduction_at_budget``, ``fraction_at_budget``, ``ess_mean`` and
        ``ess_min`` (effective sample size of the weights at the budget, as a
        fraction of the draws) and ``rank``.
    """
    check_likelihood(likelihood)
    if quantity not in QUANTITIES:
        raise BayescaleError(f"quantity must be one of {list(QUANTITIES)}, got {quantity!r}")
    if rank_by not in RANK_BY:
        raise BayescaleError(f"rank_by must be one of {list(RANK_BY)}, got {rank_by!r}")
    if not isinstance(outcomes, int) or outcomes < 2:
        raise BayescaleError(f"outcomes must be an integer >= 2, got {outcomes!r}")
    frame = _candidates_frame(candidates, law, flops_per_param_token)
    target = optimal_allocation_draws(law, theta, compute, unique_tokens, flops_per_param_token)[
        quantity
    ].isel(query=0)
    q = np.log(target.transpose(*SAMPLE_DIMS).values.ravel())
    th, _ = _theta_arrays(law, theta)
    flat = {k: v.reshape(1, -1) for k, v in th.items()}  # (1, draws)
    rng = np.random.default_rng(random_seed)
    variance_now = float(np.var(q))
    budget = float(frame["cost"].max()) if budget is None else _positive(budget, "budget")
    rows = []
    for _, cand in frame.iterrows():  # one candidate at a time bounds memory to outcomes x draws
        log_u = np.log(cand["unique_tokens"]) if "unique_tokens" in frame else None
        mu = _log_loss(law, flat, np.log(cand["params"]), np.log(cand["tokens"]), log_u)  # (1, draws)
        replicates = max(1, int(budget // cand["cost"]))
        single = _expected_variance(q, mu, flat, likelihood, 1, outcomes, rng)
        spent = single
        if replicates > 1:
            spent = _expected_variance(q, mu, flat, likelihood, replicates, outcomes, rng)
        rows.append(
            {
                "variance_now": variance_now,
                "variance_after": single[0],
                "reduction": variance_now - single[0],
                "reduction_per_flop": (variance_now - single[0]) / cand["cost"],
                "replicates": replicates,
                "reduction_at_budget": variance_now - spent[0],
                "fraction_at_budget": (variance_now - spent[0]) / variance_now if variance_now > 0 else 0.0,
                "ess_mean": spent[1],
                "ess_min": spent[2],
            }
        )
    table = pd.concat([frame.reset_index(drop=True), pd.DataFrame(rows)], axis=1)
    table["rank"] = table[RANK_BY[rank_by]].rank(ascending=False, method="min").astype(int)
    return table.sort_values("rank", kind="stable").reset_index(drop=True)


def _candidates_frame(candidates: Any, law: ScalingLaw, k: float) -> pd.DataFrame:
    if not isinstance(candidates, pd.DataFrame):
        raise BayescaleError(f"candidates must be a DataFrame, got {type(candidates).__name__}")
    frame = candidates.rename(columns=canonical_columns(candidates.columns))
    if "cost" not in frame.columns and "compute" in frame.columns:
        frame = frame.rename(columns={"compute": "cost"})
    needed = ["params", "tokens"] + (["unique_tokens"] if "unique_tokens" in law.required_columns else [])
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise BayescaleError(f"candidates need column(s) {missing}; found {list(candidates.columns)}")
    if len(frame) == 0:
        raise BayescaleError("no candidate runs given")
    keep = needed + (["cost"] if "cost" in frame.columns else [])
    frame = frame[keep].astype(float)
    make_query(**{c: frame[c] for c in keep})  # finite and > 0, with the column named on error
    if "cost" not in frame.columns:
        frame["cost"] = k * frame["params"] * frame["tokens"]
    return frame


def design(
    fit: Fit,
    compute: float,
    candidates: Any,
    unique_tokens: float | None = None,
    quantity: str = "params",
    outcomes: int = 256,
    random_seed: int | None = None,
    flops_per_param_token: float = FLOPS_PER_PARAM_TOKEN,
    budget: float | None = None,
    rank_by: str = "budget",
) -> pd.DataFrame:
    """:func:`expected_variance_reduction` on a fit's posterior; ``candidates`` may be a CSV path."""
    if not isinstance(candidates, pd.DataFrame):
        from pathlib import Path

        path = Path(candidates)
        if not path.is_file():
            raise BayescaleError(f"candidates file {str(path)!r} does not exist")
        candidates = read_table(path)
    proposed = _off_ratio_proposals(fit, candidates, flops_per_param_token)
    if proposed is not None:
        given = candidates.rename(columns=canonical_columns(candidates.columns))
        candidates = pd.concat([given, proposed], ignore_index=True)
    table = expected_variance_reduction(
        fit.law,
        fit.theta(),
        fit.likelihood,
        compute,
        candidates,
        unique_tokens,
        quantity,
        outcomes,
        random_seed,
        flops_per_param_token,
        budget,
        rank_by,
    )
    return _flag_candidates(table, fit, proposed)


def _off_ratio_proposals(fit: Fit, candidates: pd.DataFrame, k: float) -> pd.DataFrame | None:
    """Off-ratio runs to rank alongside the candidates when the fit's ladder is single-ratio."""
    frame = fit.runs.frame
    if not {"params", "tokens"} <= set(frame.columns) or "unique_tokens" in fit.law.required_columns:
        return None
    ratio = frame["tokens"].to_numpy(dtype=float) / frame["params"].to_numpy(dtype=float)
    if ratio.max() / ratio.min() >= MIN_RATIO_SPREAD:
        return None
    proposed = off_ratio_candidates(fit.runs)
    named = set(candidates.rename(columns=canonical_columns(candidates.columns)).columns)
    for column in ("cost", "compute"):
        if column in named:  # the candidates give their cost: give the proposals theirs, k N D
            proposed[column] = k * proposed["params"] * proposed["tokens"]
    return proposed


def _flag_candidates(table: pd.DataFrame, fit: Fit, proposed: pd.DataFrame | None) -> pd.DataFrame:
    """Columns ``duplicate_of_run`` (row of an existing run within 5% in N and D, else -1) and ``origin``."""
    notes = []
    table["duplicate_of_run"] = duplicate_of(table, fit.runs)
    repeats = table.loc[table["duplicate_of_run"] >= 0]
    if len(repeats):
        listed = ", ".join(
            f"N = {r.params:.3g}, D = {r.tokens:.3g} (run {r.duplicate_of_run})" for r in repeats.itertuples()
        )
        notes.append(
            f"{len(repeats)} candidate(s) repeat an existing run within 5% in N and D: {listed}; a repeat "
            "only averages the noise of a point the fit already has"
        )
    if proposed is not None:
        keys = set(zip(proposed["params"], proposed["tokens"], strict=True))
        table["origin"] = [
            "proposed: off-ratio" if (n, d) in keys else "given"
            for n, d in zip(table["params"], table["tokens"], strict=True)
        ]
        notes.append(
            f"the fit's runs all share one tokens-per-parameter ratio; {len(proposed)} off-ratio runs "
            "(4x fewer and 4x more tokens per parameter at the smallest sizes, origin 'proposed: "
            "off-ratio') are ranked with the candidates"
        )
    table.attrs["notes"] = notes
    return table
