"""Questions answered from a fit's posterior, vectorised over all draws at once.

The core functions (:mod:`bayescale.questions.allocation`, importable from here too) take a
law and ``theta``, a dict of parameter draws as ``xarray.DataArray`` with dims ``chain`` and
``draw`` (a fit's :meth:`~bayescale.Fit.theta`, or :func:`point_theta` for published values),
and return an ``xarray.Dataset`` with dims ``chain``, ``draw``, ``query``. The ``fit``-taking
functions here wrap them, blend them beyond the runs (:mod:`bayescale.questions.beyond_runs`)
and summarise each quantity as median and credible interval, one row per query.

Conventions (compute, unique tokens, the numerical optimum): :mod:`bayescale.questions.allocation`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import xarray as xr

from bayescale.data.schema import FLOPS_PER_PARAM_TOKEN, canonical_columns
from bayescale.errors import BayescaleError, LawError
from bayescale.model.laws import covariates, ops
from bayescale.model.pymc_model import draw_log_noise
from bayescale.posterior.extrapolation import beyond, beyond_compute, span_of
from bayescale.posterior.intervals import SAMPLE_DIMS, check_interval, interval_table
from bayescale.posterior.query import make_query
from bayescale.questions.allocation import (
    BISECTION_STEPS,
    GOLDEN_STEPS,
    GRID_POINTS,
    MAX_COMPUTE,
    SLOPE_STEP,
    _check_flops,
    compare_plans_draws,
    optimal_allocation_draws,
    point_theta,
    target_compute_draws,
)
from bayescale.questions.beyond_runs import _beyond_runs, _on_budget

if TYPE_CHECKING:
    from bayescale.posterior.protocol import FitLike as Fit

# The per-draw answers moved to bayescale.questions.allocation; their names stay importable from here.
__all__ = [
    "BISECTION_STEPS",
    "FLOPS_PER_PARAM_TOKEN",
    "GOLDEN_STEPS",
    "GRID_POINTS",
    "MAX_COMPUTE",
    "SLOPE_STEP",
    "compare_plans",
    "compare_plans_draws",
    "optimal",
    "optimal_allocation_draws",
    "optimal_draws",
    "point_theta",
    "predict",
    "predict_draws",
    "target_compute",
    "target_compute_draws",
]


# --------------------------------------------------------------------------- 1-2. optimal allocation


def optimal_draws(
    fit: Fit,
    compute: Any,
    unique_tokens: Any = None,
    flops_per_param_token: float = FLOPS_PER_PARAM_TOKEN,
    average_beyond: bool = True,
    group: str | None = None,
) -> xr.Dataset:
    """:func:`optimal_allocation_draws` on a fit's posterior (a grouped law's ``group``, see ``Fit.theta``).

    With ``average_beyond`` (default), budgets beyond the runs' compute are answered by
    the fitted law blended with the fit's variant law (:meth:`~bayescale.Fit.variant_fit`),
    the blend's weight and discrepancy growing smoothly with the distance
    (:mod:`bayescale.posterior.extrapolation`); with ``unique_tokens`` by the discrepancy alone.
    """
    theta = fit.theta(group)
    draws = optimal_allocation_draws(fit.law, theta, compute, unique_tokens, flops_per_param_token)
    if not average_beyond:
        return draws
    query = make_query(compute=compute, unique_tokens=unique_tokens)
    budgets = query["compute"].values
    distance = beyond_compute(span_of(fit.runs), budgets, flops_per_param_token)

    def second(variant: Fit) -> xr.Dataset:
        return optimal_allocation_draws(variant.law, variant.theta(), compute, None, flops_per_param_token)

    def at_edge(one: Fit) -> xr.Dataset:
        # The optimal loss at the budget of the largest run's N D: there the runs measured the loss,
        # so the laws' gap is not extrapolation. N_opt is not measured by the runs: not anchored.
        edge = flops_per_param_token * span_of(fit.runs).params_tokens_max
        theta = one.theta(group) if one is fit else one.theta()
        return optimal_allocation_draws(one.law, theta, [edge], None, flops_per_param_token)[["loss"]]

    blended = _beyond_runs(
        fit,
        draws,
        distance,
        None if unique_tokens is not None else second,
        ("loss", "params"),
        ("a",),
        at_edge,
    )
    if blended is draws:
        return draws
    blended = _on_budget(blended, budgets, _check_flops(flops_per_param_token))
    if "epochs" in blended:
        blended["epochs"] = blended["tokens"] / xr.DataArray(query["unique_tokens"].values, dims="query")
    return blended


def optimal(
    fit: Fit,
    compute: Any,
    unique_tokens: Any = None,
    prob: float = 0.9,
    kind: str = "eti",
    flops_per_param_token: float = FLOPS_PER_PARAM_TOKEN,
    average_beyond: bool = True,
    group: str | None = None,
) -> pd.DataFrame:
    """Table of :func:`optimal_draws`: ``compute`` (and ``unique_tokens``), then each quantity's interval."""
    check_interval(prob, kind)
    query = make_query(compute=compute, unique_tokens=unique_tokens)
    draws = optimal_draws(fit, compute, unique_tokens, flops_per_param_token, average_beyond, group)
    return interval_table(draws, prob, kind, query)


# --------------------------------------------------------------------------- 3. loss at a plan


def predict_draws(
    fit: Fit,
    params: Any,
    tokens: Any,
    unique_tokens: Any = None,
    random_seed: int | None = None,
    average_beyond: bool = True,
    group: str | None = None,
) -> xr.Dataset:
    """Draws of the mean loss ``loss`` and predictive loss ``loss_predictive`` per query.

    ``group``: a grouped law's group (see ``Fit.theta``); ``None`` is a typical group.

    With ``average_beyond`` (default), queries beyond the runs' range
    (:func:`~bayescale.posterior.extrapolation.beyond`) are answered by the fitted law
    blended with the fit's variant law (:meth:`~bayescale.Fit.variant_fit`), more as the
    distance grows; with ``unique_tokens``, which the variant does not see, by the
    discrepancy alone.
    """
    query = make_query(params=params, tokens=tokens, unique_tokens=unique_tokens)
    if "unique_tokens" in fit.law.required_columns and "unique_tokens" not in query:
        raise LawError(f"law {fit.law.name!r} needs unique_tokens to predict")
    x = covariates(query["params"], query["tokens"], query.get("unique_tokens"))
    if "log_unique_tokens" in x:  # U available; the run sees at most D of it
        x["log_unique_tokens"] = np.minimum(x["log_unique_tokens"], x["log_tokens"])
    theta = fit.theta(group)
    log_mean = fit.law.log_loss(theta, x, ops.NUMPY)
    log_mean = log_mean.transpose("chain", "draw", "query")
    noise = draw_log_noise(np.random.default_rng(random_seed), fit.likelihood, theta, log_mean.shape)
    # Heavy-tailed noise (small nu) can put a rare draw beyond exp's float range; it becomes inf,
    # a faithful "larger than any float" draw that leaves the quantiles untouched.
    with np.errstate(over="ignore"):
        predictive = np.exp(log_mean + noise)
    draws = xr.Dataset({"loss": np.exp(log_mean), "loss_predictive": predictive})
    if not average_beyond:
        return draws
    seed = None if random_seed is None else random_seed + 1

    def second(variant: Fit) -> xr.Dataset:
        return predict_draws(variant, params, tokens, None, seed, average_beyond=False)

    distance = beyond(span_of(fit.runs), query["params"].values, query["tokens"].values)
    sees_u = "unique_tokens" in query
    return _beyond_runs(fit, draws, distance, None if sees_u else second, ("loss", "loss_predictive"))


def predict(
    fit: Fit,
    params: Any,
    tokens: Any,
    unique_tokens: Any = None,
    prob: float = 0.9,
    kind: str = "eti",
    random_seed: int | None = None,
    average_beyond: bool = True,
    group: str | None = None,
) -> pd.DataFrame:
    """Table of :func:`predict_draws`: the inputs, then ``loss_*`` and ``loss_predictive_*``."""
    check_interval(prob, kind)
    query = make_query(params=params, tokens=tokens, unique_tokens=unique_tokens)
    draws = predict_draws(fit, params, tokens, unique_tokens, random_seed, average_beyond, group)
    return interval_table(draws, prob, kind, query)


# --------------------------------------------------------------------------- 4. budget for a target loss


def target_compute(
    fit: Fit,
    target_loss: Any,
    unique_tokens: Any = None,
    prob: float = 0.9,
    kind: str = "eti",
    flops_per_param_token: float = FLOPS_PER_PARAM_TOKEN,
    average_beyond: bool = True,
) -> pd.DataFrame:
    """Compute needed to reach each target loss: one row per target.

    Columns: ``target_loss`` (and ``unique_tokens``), ``compute_*``,
    ``params_*``, ``tokens_*`` (median and interval; ``inf`` where more than
    that share of draws cannot reach the target) and ``fraction_unreachable``.
    With ``average_beyond`` (default), a target whose median compute lies beyond
    the runs' largest N D is answered by the fitted law blended with the fit's variant law
    (:meth:`~bayescale.Fit.variant_fit`; with ``unique_tokens`` the discrepancy alone), the
    blend growing with the distance of that median compute.
    """
    check_interval(prob, kind)
    query = make_query(target_loss=target_loss, unique_tokens=unique_tokens)
    draws = target_compute_draws(fit.law, fit.theta(), target_loss, unique_tokens, flops_per_param_token)
    if average_beyond:
        # The answer's own compute places it: beyond the runs when its median is past their N D.
        median = draws["compute"].median(SAMPLE_DIMS).values
        distance = beyond_compute(span_of(fit.runs), median, flops_per_param_token)

        def second(variant: Fit) -> xr.Dataset:
            return target_compute_draws(
                variant.law, variant.theta(), target_loss, None, flops_per_param_token
            )

        blended = _beyond_runs(
            fit, draws, distance, None if unique_tokens is not None else second, ("compute", "params")
        )
        if blended is not draws:
            draws = _on_budget(blended, blended["compute"], _check_flops(flops_per_param_token))
            draws = draws.drop_vars("tokens_per_param")
    share = draws["unreachable"].mean(SAMPLE_DIMS).values
    table = _interval_table_with_inf(draws.drop_vars("unreachable"), prob, kind, query)
    table["fraction_unreachable"] = share
    return table


def _interval_table_with_inf(draws: xr.Dataset, prob: float, kind: str, query: xr.Dataset) -> pd.DataFrame:
    """:func:`interval_table` for draws that may be ``inf``: quantiles into inf stay inf, never NaN."""
    big = 1e300  # stands in for inf: far above any budget, and sums of thousands of it stay finite
    table = interval_table(draws.where(np.isfinite(draws), big), prob, kind, query)
    stats = [c for c in table.columns if c not in query.data_vars]
    table[stats] = table[stats].where(table[stats] < big / 1e6, np.inf)
    return table


# --------------------------------------------------------------------------- 5. comparing plans


def compare_plans(
    fit: Fit,
    plans: Sequence[Sequence[float]] | pd.DataFrame,
    prob: float = 0.9,
    kind: str = "eti",
    flops_per_param_token: float = FLOPS_PER_PARAM_TOKEN,
    average_beyond: bool = True,
    unique_tokens: Any = None,
) -> pd.DataFrame:
    """Which plan gives the lowest loss: one row per plan.

    Parameters
    ----------
    plans
        ``(N, D)`` or ``(N, D, U)`` tuples, or a DataFrame with columns
        ``params``, ``tokens`` and optionally ``unique_tokens``.
    unique_tokens
        Unique tokens of plans given as ``(N, D)``: one number shared by every plan (the data
        one has) or one per plan; not with plans that carry their own U.

    Returns
    -------
    pandas.DataFrame
        ``params``, ``tokens`` (``unique_tokens``), ``compute``, ``loss_*``,
        ``prob_best`` (posterior probability that the plan has the lowest mean
        loss), ``regret_mean`` (expected loss above the per-draw optimum at
        the plan's own budget) and ``regret_*``.

        With ``average_beyond`` (default), each plan beyond the runs' range is judged
        on the fitted law blended with the fit's variant law
        (:meth:`~bayescale.Fit.variant_fit`; with ``unique_tokens`` the discrepancy alone),
        more as its distance grows; ``prob_best`` compares the plans' blended losses
        draw by draw (each draw's blend is shared by every plan).
    """
    check_interval(prob, kind)
    frame = _with_unique_tokens(_plans_frame(plans), unique_tokens)
    u = frame["unique_tokens"] if "unique_tokens" in frame else None
    draws = compare_plans_draws(
        fit.law, fit.theta(), frame["params"], frame["tokens"], u, flops_per_param_token
    )
    if average_beyond:
        distance = beyond(span_of(fit.runs), frame["params"].to_numpy(), frame["tokens"].to_numpy())

        def second(variant: Fit) -> xr.Dataset:
            return compare_plans_draws(
                variant.law, variant.theta(), frame["params"], frame["tokens"], None, flops_per_param_token
            )

        blended = _beyond_runs(
            fit, draws, distance, None if u is not None else second, ("loss",), ("regret",)
        )
        if blended is not draws:
            loss = blended["loss"]
            best = (loss == loss.min("query")).astype(float)
            draws = blended.assign(best=best, regret=np.maximum(blended["regret"], 0.0))
    query = make_query(params=frame["params"], tokens=frame["tokens"], unique_tokens=u)
    query["compute"] = flops_per_param_token * query["params"] * query["tokens"]
    table = interval_table(draws[["loss"]], prob, kind, query)
    table["prob_best"] = draws["best"].mean(SAMPLE_DIMS).values
    table["regret_mean"] = draws["regret"].mean(SAMPLE_DIMS).values
    regret = interval_table(draws[["regret"]], prob, kind)
    return pd.concat([table, regret], axis=1)


def _with_unique_tokens(frame: pd.DataFrame, unique_tokens: Any) -> pd.DataFrame:
    """``frame`` with ``unique_tokens`` as its U column (one value for all plans, or one per plan)."""
    if unique_tokens is None:
        return frame
    if "unique_tokens" in frame:
        raise BayescaleError(
            "the plans already give unique tokens (N, D, U); give U there or as unique_tokens=, not both"
        )
    values = np.asarray(unique_tokens, dtype=float)
    if values.ndim > 1 or (values.ndim == 1 and values.size != len(frame)):
        raise BayescaleError(
            f"unique_tokens= must be one number or one per plan ({len(frame)}); got shape {values.shape}"
        )
    return frame.assign(unique_tokens=np.broadcast_to(values, (len(frame),)))


def _plans_frame(plans: Sequence[Sequence[float]] | pd.DataFrame) -> pd.DataFrame:
    if isinstance(plans, pd.DataFrame):
        frame = plans.rename(columns=canonical_columns(plans.columns))
        missing = [c for c in ("params", "tokens") if c not in frame.columns]
        if missing:
            raise BayescaleError(f"plans need column(s) {missing}; found {list(plans.columns)}")
        return frame
    rows = [tuple(p) for p in plans]
    lengths = {len(r) for r in rows}
    if not rows or not lengths <= {2, 3} or len(lengths) != 1:
        raise BayescaleError(
            f"each plan must be (params, tokens) or (params, tokens, unique_tokens): {plans!r}"
        )
    names = ["params", "tokens", "unique_tokens"][: lengths.pop()]
    return pd.DataFrame(rows, columns=names, dtype=float)
