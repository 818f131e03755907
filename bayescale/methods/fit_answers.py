"""The questions asked of a parametric fit, as methods of :class:`bayescale.Fit` (a mixin).

Each answer is a function of the posterior draws, from :mod:`bayescale.questions`, marked with
the extrapolation guard's columns, the loss unit, the fit's caveats and, for a fit that failed
its diagnostics, its problems. A fit to checkpoints also continues one of its runs
(:meth:`FitAnswers.predict` with ``run``).
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import pandas as pd
import xarray as xr

from bayescale.errors import RunsError
from bayescale.inference import diagnostics as diag
from bayescale.model.laws import covariates, ops
from bayescale.model.pymc_model import RUN_EFFECT, RUN_LABEL, draw_log_noise
from bayescale.posterior.extrapolation import guard, span_of
from bayescale.posterior.intervals import check_interval, interval_table
from bayescale.posterior.protocol import FitLike
from bayescale.posterior.query import make_query
from bayescale.questions import plan
from bayescale.questions.design import design


class AnsweringFit(FitLike, Protocol):
    """What the answers read of a fit beyond :class:`~bayescale.posterior.protocol.FitLike`."""

    @property
    def warn(self) -> bool:
        """Whether an answer of a fit that failed its diagnostics warns."""
        ...

    def caveats(self, fit_variant: bool = True) -> list[str]:
        """Reasons not to take the fit's answers at face value."""
        ...


class FitAnswers:
    """Predictions, allocations, target compute, plan comparison and run design of a fitted law.

    A mixin of :class:`bayescale.Fit`: its methods read the fit through :class:`AnsweringFit`.
    """

    def predict(
        self: AnsweringFit,
        params: Any,
        tokens: Any,
        unique_tokens: Any = None,
        prob: float = 0.9,
        kind: str = "eti",
        random_seed: int | None = None,
        average_beyond: bool = True,
        group: str | None = None,
        run: str | None = None,
    ) -> pd.DataFrame:
        """Loss at new (N, D[, U]): the mean loss and the posterior predictive loss.

        A fit to checkpoints (a ``run`` column) answers for a new run: its offset is drawn from
        the runs' spread ``sigma_run``, so the predictive interval carries seed noise. ``run``
        (one of the fit's run labels) continues that run instead: its own offset is added to
        the law, and only the checkpoint noise ``sigma`` to the predictive loss (``params``
        must then be the run's, or ``None``; ``average_beyond`` does not apply: the second law
        has no offsets of its own runs to add).

        Returns
        -------
        pandas.DataFrame
            One row per query: the inputs, then ``loss_{median,lower,upper}``
            (the law's mean) and ``loss_predictive_{median,lower,upper}``
            (with run-to-run noise), then the extrapolation guard's distances
            (``compute_multiple``, ``params_multiple``, ``tokens_per_param_outside``).
            With ``average_beyond`` (default) a query beyond the runs' range is
            answered by the equal mixture of this law and :meth:`variant_fit`. ``group``:
            a grouped law's group (``None``: a typical group, the population medians).
        """
        if run is not None:
            return _flag(
                self, _continue_run(self, run, params, tokens, unique_tokens, prob, kind, random_seed)
            )
        table = plan.predict(
            self, params, tokens, unique_tokens, prob, kind, random_seed, average_beyond, group
        )
        return _flag(self, table)

    def run_offset(self: AnsweringFit, run: str) -> xr.DataArray:
        """Posterior draws of the offset of log loss of one of the fit's runs (dims ``chain``, ``draw``)."""
        return _offset(self.posterior, run)

    def optimal(
        self: AnsweringFit,
        compute: Any,
        unique_tokens: Any = None,
        prob: float = 0.9,
        kind: str = "eti",
        flops_per_param_token: float = plan.FLOPS_PER_PARAM_TOKEN,
        average_beyond: bool = True,
        group: str | None = None,
        *,
        random_seed: int | None = None,
    ) -> pd.DataFrame:
        """Compute-optimal allocation at budget(s) C = k N D (k = 6 by default).

        With ``unique_tokens`` (the ``data-constrained`` law) it is the best
        allocation when only U unique tokens are available.

        Returns
        -------
        pandas.DataFrame
            One row per budget: ``compute`` (``unique_tokens``), then
            ``params``, ``tokens``, ``tokens_per_param``, ``loss`` and the
            exponents ``a``, ``b`` of N_opt ∝ C^a, D_opt ∝ C^b, each as
            ``_median``, ``_lower``, ``_upper``; with U also ``epochs`` and the
            value of more unique data (see :func:`bayescale.questions.plan.optimal_allocation_draws`);
            then the extrapolation guard's distances. With ``average_beyond`` (default)
            a budget beyond the runs' largest N D is answered by the equal mixture of
            this law and :meth:`variant_fit` (not with ``unique_tokens``). ``group``: a
            grouped law's group (``None``: a typical group).
        ``random_seed`` is accepted as by :meth:`predict` and :meth:`bayescale.Averaged.optimal`, so one
        call answers a fit and an average of fits; this answer is a function of the posterior draws
        and draws no random numbers, so the seed leaves it unchanged.
        """
        return _flag(
            self,
            plan.optimal(
                self, compute, unique_tokens, prob, kind, flops_per_param_token, average_beyond, group
            ),
            flops_per_param_token,
        )

    def target_compute(
        self: AnsweringFit,
        target_loss: Any,
        unique_tokens: Any = None,
        prob: float = 0.9,
        kind: str = "eti",
        flops_per_param_token: float = plan.FLOPS_PER_PARAM_TOKEN,
        average_beyond: bool = True,
        *,
        random_seed: int | None = None,
    ) -> pd.DataFrame:
        """Compute needed to reach each target loss (see :func:`bayescale.questions.plan.target_compute`).

        With ``average_beyond`` (default) a target whose compute lies beyond the runs
        is answered by the equal mixture of this law and :meth:`variant_fit`.
        ``random_seed`` is accepted as by :meth:`predict` and :meth:`optimal`, so one
        call answers a fit and an average of fits; this answer is a function of the posterior draws
        and draws no random numbers, so the seed leaves it unchanged.
        """
        return _flag(
            self,
            plan.target_compute(
                self, target_loss, unique_tokens, prob, kind, flops_per_param_token, average_beyond
            ),
            flops_per_param_token,
        )

    def compare_plans(
        self: AnsweringFit,
        plans: Any,
        prob: float = 0.9,
        kind: str = "eti",
        flops_per_param_token: float = plan.FLOPS_PER_PARAM_TOKEN,
        average_beyond: bool = True,
        *,
        unique_tokens: Any = None,
        random_seed: int | None = None,
    ) -> pd.DataFrame:
        """Probability that each plan (N, D[, U]) has the lowest loss, and its expected regret.

        See :func:`bayescale.questions.plan.compare_plans`; with ``average_beyond``
        (default) plans beyond the runs are judged on the mixture with :meth:`variant_fit`.
        ``unique_tokens``: the U of plans given as (N, D), one number or one per plan.
        ``random_seed`` is accepted as by :meth:`predict` and :meth:`optimal`, so one
        call answers a fit and an average of fits; this answer is a function of the posterior draws
        and draws no random numbers, so the seed leaves it unchanged.
        """
        return _flag(
            self,
            plan.compare_plans(self, plans, prob, kind, flops_per_param_token, average_beyond, unique_tokens),
            flops_per_param_token,
        )

    def design(
        self: AnsweringFit,
        compute: float,
        candidates: Any,
        unique_tokens: float | None = None,
        quantity: str = "params",
        outcomes: int = 256,
        random_seed: int | None = None,
        budget: float | None = None,
        rank_by: str = "budget",
        flops_per_param_token: float = plan.FLOPS_PER_PARAM_TOKEN,
    ) -> pd.DataFrame:
        """Rank candidate runs by how much they are expected to pin down the plan at ``compute``.

        See :mod:`bayescale.questions.design` for the method and its limits.
        """
        return _flag(
            self,
            design(
                self,
                compute,
                candidates,
                unique_tokens,
                quantity,
                outcomes,
                random_seed,
                budget=budget,
                rank_by=rank_by,
                flops_per_param_token=flops_per_param_token,
            ),
        )


def _flag(
    fit: AnsweringFit, table: pd.DataFrame, flops_per_param_token: float = plan.FLOPS_PER_PARAM_TOKEN
) -> pd.DataFrame:
    """Add the extrapolation guard's columns and the loss unit; mark an answer of a failed fit."""
    guard(table, span_of(fit.runs), flops_per_param_token)
    table.attrs["loss_unit"] = fit.runs.loss_unit
    found = fit.caveats(fit_variant=False)
    if found:
        table.attrs["caveats"] = found
    if not fit.diagnostics["ok"]:
        table.attrs["fit_warning"] = "; ".join(fit.diagnostics["problems"])
        if fit.warn:
            diag.warn_if_failed(fit.diagnostics, stacklevel=4)
    return table


def _continue_run(
    fit: AnsweringFit,
    run: str,
    params: Any,
    tokens: Any,
    unique_tokens: Any,
    prob: float,
    kind: str,
    random_seed: int | None,
) -> pd.DataFrame:
    """:meth:`predict` for more tokens of a known run: its own offset, the checkpoint noise only."""
    offset = _offset(fit.posterior, run)
    own = fit.runs.frame[fit.runs.frame["run"].astype(str) == str(run)]
    n = float(own["params"].iloc[0])
    size = np.size(tokens)
    if params is not None and not np.allclose(np.asarray(params, dtype=float), n, rtol=1e-9):
        raise RunsError(f"run {run!r} has params {n:.6g}; give params=None or {n:.6g} to continue it")
    check_interval(prob, kind)
    query = make_query(params=np.full(size, n), tokens=tokens, unique_tokens=unique_tokens)
    u = query["unique_tokens"] if "unique_tokens" in query else None
    x = covariates(query["params"], query["tokens"], u)
    theta = fit.theta()
    log_mean = (fit.law.log_loss(theta, x, ops.NUMPY) + offset).transpose("chain", "draw", "query")
    seed_free = {k: v for k, v in theta.items() if k != "sigma_run"}
    noise = draw_log_noise(np.random.default_rng(random_seed), fit.likelihood, seed_free, log_mean.shape)
    with np.errstate(over="ignore"):
        draws = xr.Dataset({"loss": np.exp(log_mean), "loss_predictive": np.exp(log_mean + noise)})
    table = interval_table(draws, prob, kind, query)
    table.attrs["run"] = str(run)
    return table


def _offset(posterior: xr.Dataset, run: str) -> xr.DataArray:
    """The draws of ``run``'s offset of log loss in ``posterior``; a precise error for a fit without it."""
    if RUN_EFFECT not in posterior:
        raise RunsError("this fit has no run offsets: fit runs with a `run` column of checkpoints")
    labels = [str(label) for label in posterior[RUN_EFFECT][RUN_LABEL].values]
    if str(run) not in labels:
        shown = ", ".join(labels[:8]) + (", ..." if len(labels) > 8 else "")
        raise RunsError(f"unknown run {run!r}; the fit's runs are {shown}")
    return posterior[RUN_EFFECT].sel({RUN_LABEL: str(run)}, drop=True)
