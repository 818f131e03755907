"""Fit a scaling law to runs and hold the posterior: :func:`fit_parametric` and :class:`Fit`."""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from bayescale.data.columns import warn_ladder
from bayescale.data.runs import Runs
from bayescale.data.storage import runs_to_dataset
from bayescale.errors import BayescaleError, LawError, RunsError, RunsWarning
from bayescale.inference import container
from bayescale.inference import diagnostics as diag
from bayescale.inference.sampling import SAMPLER_DEFAULTS as BASE_SAMPLER_DEFAULTS
from bayescale.inference.sampling import SamplerConfig, SamplerSettings, resolve_sampler, resolve_seed
from bayescale.inference.sampling import run as run_sampler
from bayescale.methods import io
from bayescale.methods.small_ladder import borrow_for_small_ladder, borrowed_note
from bayescale.model.laws import ScalingLaw, covariates, get_law, ops
from bayescale.model.likelihoods import Likelihood
from bayescale.model.priors import Prior
from bayescale.model.pymc_model import (
    OBSERVED,
    RUN_EFFECT,
    RUN_LABEL,
    check_likelihood,
    draw_log_noise,
    group_variable,
    internal_variables,
    model_parameters,
    resolve_priors,
    run_labels,
)
from bayescale.posterior.contraction import information_message, prior_contraction
from bayescale.posterior.extrapolation import VARIANT_LAW, guard, span_of
from bayescale.posterior.intervals import check_interval, interval_dict, interval_table
from bayescale.posterior.query import make_query
from bayescale.posterior.residuals import TREND_ALPHA, log_residuals, residual_frame, trend_message, trends
from bayescale.posterior.result import draws_text, finite_or_none, html_card, json_record, short_repr, verdict
from bayescale.questions import plan
from bayescale.questions.design import design

#: Below this posterior median of the Student-t degrees of freedom, most runs are outliers to
#: the fit: :meth:`Fit.caveats` says so.
NU_CAUTION = 3.0


@dataclass
class Fit:
    """A fitted law: the posterior and everything needed to rebuild or question it.

    Attributes
    ----------
    idata
        ``xarray.DataTree`` (:mod:`~bayescale.inference.container`) with ``posterior`` (every law and noise
        parameter; fixed ones as constants), ``sample_stats``,
        ``observed_data`` and ``constant_data`` (the runs).
    law
        The fitted law.
    runs
        The runs the law was fitted to.
    priors
        Prior of every free parameter.
    fixed
        Value of every fixed parameter.
    likelihood
        ``"student_t"`` or ``"normal"``, on log loss.
    sampler
        The sampler configuration used.
    random_seed
        Seed of the sampler, or ``None``.
    diagnostics
        r_hat, bulk ESS and divergences (see :func:`bayescale.inference.diagnostics.compute`).
    warn
        Whether answers (``predict``, ``optimal``) of a fit that failed its
        diagnostics emit a :class:`~bayescale.FitWarning`. Either way such
        answers carry the problems in ``table.attrs["fit_warning"]``.

    Answers beyond the runs' range average this law with a second one fitted to
    the same runs (:meth:`variant_fit`); see :mod:`bayescale.posterior.extrapolation`.
    """

    idata: Any
    law: ScalingLaw
    runs: Runs
    priors: dict[str, Prior]
    fixed: dict[str, float]
    likelihood: Likelihood
    sampler: SamplerConfig
    random_seed: int | None
    diagnostics: dict[str, Any]
    warn: bool = True
    _variants: dict[str, Fit | None] = field(default_factory=dict, repr=False, compare=False)
    # The residuals on the fit's own runs and the (idata, runs) they came from: the fit's warning,
    # its summary and its report each want them, at ~0.2 s on a few hundred runs.
    _residuals: tuple[Any, Runs, np.ndarray] | None = field(default=None, repr=False, compare=False)
    # The caveats (nu, LOO against the second law) and the (idata, variant) they came from.
    _caveats: tuple[Any, Any, list[str]] | None = field(default=None, repr=False, compare=False)

    @property
    def posterior(self) -> xr.Dataset:
        """Posterior draws of every parameter (dims ``chain``, ``draw``)."""
        return container.posterior(self.idata)

    @property
    def parameter_names(self) -> list[str]:
        """Law parameters then noise parameters (with ``sigma_run`` for checkpoints), in order."""
        run_effects = run_labels(self.runs) is not None
        return [p.name for p in model_parameters(self.law, self.likelihood, run_effects)]

    @property
    def free_parameters(self) -> list[str]:
        """Parameters that were sampled (not fixed)."""
        return [n for n in self.parameter_names if n not in self.fixed]

    @property
    def groups(self) -> list[str]:
        """Labels of the groups a pooled law was fitted to (empty for other laws)."""
        return [str(g) for g in self.posterior.coords["group"].values] if self.law.pooled else []

    def theta(self, group: str | None = None) -> dict[str, xr.DataArray]:
        """Draws of every parameter, by name, for evaluating the law.

        Parameters
        ----------
        group
            For a law with pooled parameters: use this group's values of them.
            ``None`` gives the population medians (a typical group).
        """
        theta = {name: self.posterior[name] for name in self.parameter_names}
        if group is not None:
            if not self.law.pooled:
                raise LawError(f"law {self.law.name!r} has no per-group parameters; leave group=None")
            if str(group) not in self.groups:
                raise LawError(f"unknown group {group!r}; the fit has groups {self.groups}")
            for name in self.law.pooled:
                theta[name] = self.posterior[group_variable(name)].sel(group=str(group), drop=True)
        return theta

    def variant_fit(self) -> Fit | None:
        """The variant law (:data:`~bayescale.posterior.extrapolation.VARIANT_LAW`) fitted to the same runs.

        Answers beyond the runs' range are drawn half from it. It is fitted on first
        use with this fit's sampler settings, seed and likelihood, and the priors and
        fixed values the user gave for parameters the variant shares (E, alpha_N,
        alpha_D, the noise), so the same fit gives the same answers; then kept.
        ``None`` when this fit is of the variant law itself, of a law with pooled
        parameters, or when the variant cannot be fitted to these runs (too few of
        them, say).
        """
        if VARIANT_LAW not in self._variants:
            self._variants[VARIANT_LAW] = self._fit_variant()
        return self._variants[VARIANT_LAW]

    @property
    def averages_beyond(self) -> bool:
        """Whether answers beyond the runs average this law with :meth:`variant_fit`'s law.

        Not for a fit of the variant law itself, nor for laws with pooled parameters.
        """
        return self.law.name != VARIANT_LAW and not self.law.pooled

    def _fit_variant(self) -> Fit | None:
        if not self.averages_beyond:
            return None
        settings = self.sampler.to_dict()
        # The user's priors and fixed values carry over where the variant has the parameter
        # (E, the exponents, the noise): a small ladder fitted with published priors stays informed.
        run_effects = run_labels(self.runs) is not None
        defaults = {p.name: p.prior for p in model_parameters(self.law, self.likelihood, run_effects)}
        variant = {p.name for p in model_parameters(get_law(VARIANT_LAW), self.likelihood, run_effects)}
        chosen = {n: p for n, p in self.priors.items() if n in variant and defaults.get(n) != p}
        try:
            return fit_parametric(
                self.runs,
                law=VARIANT_LAW,
                priors=chosen,
                fix={n: v for n, v in self.fixed.items() if n in variant},
                likelihood=self.likelihood,
                sampler={k: settings[k] for k in ("draws", "tune", "chains")},
                random_seed=self.random_seed if isinstance(self.random_seed, int) else None,
                progressbar=False,
                warn=False,
            )
        except BayescaleError:
            return None

    def caveats(self, fit_variant: bool = True) -> list[str]:
        """Reasons not to take this fit's answers at face value, each with its evidence and a remedy.

        - The Student-t likelihood's degrees of freedom nu below :data:`NU_CAUTION` (posterior
          median): most runs are treated as outliers, so the fit follows a few of them; names the
          runs lying beyond 3 sigma and a ``--where`` filter that would drop them.
        - PSIS-LOO prefers the second law (:meth:`variant_fit`) by more than the standard error of
          the difference.

        ``fit_variant=False`` checks LOO only when the second law is already fitted (or loaded).
        """
        variant = self._variants.get(VARIANT_LAW)
        if variant is None and fit_variant and self.averages_beyond:
            variant = self.variant_fit()
        kept = self._caveats
        if kept is not None and kept[0] is self.idata and kept[1] is variant:
            return list(kept[2])
        found = [m for m in (self._nu_caveat(), self._loo_caveat(variant)) if m]
        self._caveats = (self.idata, variant, found)
        return list(found)

    def keep_caveats(self, variant: Fit | None, found: list[str]) -> None:
        """Keep caveats judged elsewhere (a saved fit's, read back) for this posterior and variant."""
        self._caveats = (self.idata, variant, list(found))

    def _nu_caveat(self) -> str | None:
        if self.likelihood != "student_t" or "nu" not in self.posterior or "nu" in self.fixed:
            return None
        nu = self.posterior["nu"].values.ravel()
        median = float(np.median(nu))
        if median >= NU_CAUTION:
            return None
        low, high = np.quantile(nu, [0.05, 0.95])
        sigma = float(np.median(self.posterior["sigma"].values))
        z = np.abs(self._own_residuals()) / sigma
        outlying = np.flatnonzero(z > 3)
        frame = self.runs.frame
        worst = outlying[np.argsort(-z[outlying])][:5]
        named = "; ".join(
            f"run {i} (N {frame['params'].iloc[i]:.3g}, D {frame['tokens'].iloc[i]:.3g}, {z[i]:.0f} sigma)"
            for i in worst
        )
        remedy = "check them, and refit without them"
        if outlying.size:
            cut = outlier_cut(frame, outlying)
            remedy = (
                "they share no range of N or D that a filter could drop without good runs: check them "
                "one by one, and refit without the bad ones"
                if cut is None
                else cut
            )
        return (
            f"nu = {median:.3g} [{low:.3g}, {high:.3g}] (Student-t degrees of freedom): most runs are "
            f"treated as outliers (nu < {NU_CAUTION:g}), so the fit follows a few runs and its plans "
            f"may not describe the rest; {outlying.size} of {len(frame)} runs lie beyond 3 sigma"
            + (f", the largest: {named}" if named else "")
            + f". {remedy[0].upper()}{remedy[1:]}, or fit another law (--law {VARIANT_LAW}; "
            "`bayescale compare`)"
        )

    def _loo_caveat(self, variant: Fit | None) -> str | None:
        if variant is None:
            return None
        from bayescale.questions.compare import LooWarning, compare

        try:
            with warnings.catch_warnings():
                # a caveat, not the comparison: `bayescale compare` reports LOO's own diagnostics
                warnings.simplefilter("ignore", LooWarning)
                warnings.simplefilter("ignore", UserWarning)
                table = compare({self.law.name: self, variant.law.name: variant})
        except (BayescaleError, ValueError, KeyError):
            return None
        best = str(table.index[0])
        row = table.loc[variant.law.name]
        if best != variant.law.name:
            return None
        other = table.loc[self.law.name]
        if not other["elpd_diff"] > other["dse"]:
            return None
        return (
            f"PSIS-LOO prefers {variant.law.name} (fitted to the same runs) over {self.law.name} by "
            f"{other['elpd_diff']:.1f} ± {other['dse']:.1f} nats (stacking weight {row['weight']:.2f}); "
            f"answers beyond the runs blend it in, but to plan with it fit --law {variant.law.name}, "
            "and see `bayescale compare` for the evidence"
        )

    def residual_trends(self, alpha: float = TREND_ALPHA) -> pd.DataFrame:
        """Whether the residuals on the fit's own runs trend with params, tokens or epochs.

        See :func:`bayescale.posterior.residuals.trends`; a grouped law's runs are
        compared with their own group's values. :func:`fit_parametric` warns when one does.
        """
        return trends(residual_frame(self.runs, self._own_residuals()), alpha)

    def _own_residuals(self) -> np.ndarray:
        """:func:`log_residuals` on the fit's own runs (each group's with its own values), kept."""
        kept = self._residuals
        if kept is not None and kept[0] is self.idata and kept[1] is self.runs:
            return kept[2]
        if self.law.pooled:
            labels = self.runs.frame["group"].astype(str).to_numpy()
            residual = np.empty(len(self.runs))
            for group in self.groups:
                rows = labels == group
                residual[rows] = log_residuals(self.law, self.theta(group), self.runs.subset(rows))
        else:
            residual = log_residuals(self.law, self.theta(), self.runs)
        residual.flags.writeable = False  # kept: no caller may change it
        self._residuals = (self.idata, self.runs, residual)
        return residual

    def summary(self, prob: float = 0.9, kind: str = "eti") -> pd.DataFrame:
        """Posterior table, one row per parameter.

        Columns: ``median``, ``lower``, ``upper``, ``r_hat``, ``ess_bulk`` and
        whether the parameter was ``fixed``.
        """
        rows = []
        for name in self.parameter_names:
            row: dict[str, Any] = {"parameter": name, **interval_dict(self.posterior[name], prob, kind)}
            row["r_hat"] = self.diagnostics["r_hat"].get(name, float("nan"))
            row["ess_bulk"] = self.diagnostics["ess_bulk"].get(name, float("nan"))
            row["fixed"] = name in self.fixed
            rows.append(row)
        for name in self.law.pooled:
            values = self.posterior[group_variable(name)]
            for group in self.groups:
                row = {"parameter": f"{name}[{group}]", **interval_dict(values.sel(group=group), prob, kind)}
                rows.append({**row, "r_hat": float("nan"), "ess_bulk": float("nan"), "fixed": False})
        return pd.DataFrame(rows).set_index("parameter")

    def to_dict(self, prob: float = 0.9, kind: str = "eti") -> dict[str, Any]:
        """JSON-ready: the law, the runs, the priors, each parameter's interval, diagnostics, residual trends.

        r_hat and ESS are ``None`` where undefined (fixed parameters, a single chain).
        """
        table = self.summary(prob, kind)
        columns = {"numbers": ("median", "lower", "upper", "r_hat", "ess_bulk"), "flags": ("fixed",)}
        parameters = {str(name): json_record(row, **columns) for name, row in table.iterrows()}
        diag = self.diagnostics
        found = self.residual_trends()
        trend_columns = {
            "numbers": ("spearman_rho", "pvalue", "curvature_rho", "curvature_pvalue"),
            "flags": ("trend", "curvature"),
        }
        residuals = {str(column): json_record(row, **trend_columns) for column, row in found.iterrows()}
        return {
            "law": self.law.name,
            "n_runs": len(self.runs),
            "prob": prob,
            "priors": {name: prior.to_dict() for name, prior in sorted(self.priors.items())},
            "parameters": parameters,
            "diagnostics": {
                "divergences": diag["divergences"],
                "max_r_hat": finite_or_none(diag["max_r_hat"]),
                "min_ess_bulk": diag["min_ess_bulk"],
                "median_steps": finite_or_none(diag.get("median_steps", math.nan)),
                "max_tree_depth_share": finite_or_none(diag.get("max_tree_depth_share", math.nan)),
                "ok": diag["ok"],
                "problems": diag["problems"],
                "warnings": diag.get("warnings", []),
                "sampler_path": diag.get("sampler_path"),
            },
            "residual_trends": residuals,
            "misfit": trend_message(found),
        }

    def predict(
        self,
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
            return self._flag(self._continue_run(run, params, tokens, unique_tokens, prob, kind, random_seed))
        table = plan.predict(
            self, params, tokens, unique_tokens, prob, kind, random_seed, average_beyond, group
        )
        return self._flag(table)

    def run_offset(self, run: str) -> xr.DataArray:
        """Posterior draws of the offset of log loss of one of the fit's runs (dims ``chain``, ``draw``)."""
        if RUN_EFFECT not in self.posterior:
            raise RunsError("this fit has no run offsets: fit runs with a `run` column of checkpoints")
        labels = [str(label) for label in self.posterior[RUN_EFFECT][RUN_LABEL].values]
        if str(run) not in labels:
            shown = ", ".join(labels[:8]) + (", ..." if len(labels) > 8 else "")
            raise RunsError(f"unknown run {run!r}; the fit's runs are {shown}")
        return self.posterior[RUN_EFFECT].sel({RUN_LABEL: str(run)}, drop=True)

    def _continue_run(
        self,
        run: str,
        params: Any,
        tokens: Any,
        unique_tokens: Any,
        prob: float,
        kind: str,
        random_seed: int | None,
    ) -> pd.DataFrame:
        """:meth:`predict` for more tokens of a known run: its own offset, the checkpoint noise only."""
        offset = self.run_offset(run)
        own = self.runs.frame[self.runs.frame["run"].astype(str) == str(run)]
        n = float(own["params"].iloc[0])
        size = np.size(tokens)
        if params is not None and not np.allclose(np.asarray(params, dtype=float), n, rtol=1e-9):
            raise RunsError(f"run {run!r} has params {n:.6g}; give params=None or {n:.6g} to continue it")
        check_interval(prob, kind)
        query = make_query(params=np.full(size, n), tokens=tokens, unique_tokens=unique_tokens)
        u = query["unique_tokens"] if "unique_tokens" in query else None
        x = covariates(query["params"], query["tokens"], u)
        theta = self.theta()
        log_mean = (self.law.log_loss(theta, x, ops.NUMPY) + offset).transpose("chain", "draw", "query")
        seed_free = {k: v for k, v in theta.items() if k != "sigma_run"}
        noise = draw_log_noise(np.random.default_rng(random_seed), self.likelihood, seed_free, log_mean.shape)
        with np.errstate(over="ignore"):
            draws = xr.Dataset({"loss": np.exp(log_mean), "loss_predictive": np.exp(log_mean + noise)})
        table = interval_table(draws, prob, kind, query)
        table.attrs["run"] = str(run)
        return table

    def optimal(
        self,
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
        return self._flag(
            plan.optimal(
                self, compute, unique_tokens, prob, kind, flops_per_param_token, average_beyond, group
            ),
            flops_per_param_token,
        )

    def target_compute(
        self,
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
        return self._flag(
            plan.target_compute(
                self, target_loss, unique_tokens, prob, kind, flops_per_param_token, average_beyond
            ),
            flops_per_param_token,
        )

    def compare_plans(
        self,
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
        return self._flag(
            plan.compare_plans(self, plans, prob, kind, flops_per_param_token, average_beyond, unique_tokens),
            flops_per_param_token,
        )

    def design(
        self,
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
        return self._flag(
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
            )
        )

    def _flag(
        self, table: pd.DataFrame, flops_per_param_token: float = plan.FLOPS_PER_PARAM_TOKEN
    ) -> pd.DataFrame:
        """Add the extrapolation guard's columns and the loss unit; mark an answer of a failed fit."""
        guard(table, span_of(self.runs), flops_per_param_token)
        table.attrs["loss_unit"] = self.runs.loss_unit
        found = self.caveats(fit_variant=False)
        if found:
            table.attrs["caveats"] = found
        if not self.diagnostics["ok"]:
            table.attrs["fit_warning"] = "; ".join(self.diagnostics["problems"])
            if self.warn:
                diag.warn_if_failed(self.diagnostics, stacklevel=4)
        return table

    @property
    def variant_law(self) -> str:
        """The name of the second law answers beyond the runs are blended with."""
        return VARIANT_LAW

    def save(self, path: str | Path, variant: bool = True) -> Path:
        """Write the fit to NetCDF atomically (see :func:`bayescale.methods.io.save_fit`).

        With ``variant`` (default) the second law (:meth:`variant_fit`) is saved with it, fitted
        first if it has not been, so that answers from the loaded fit refit nothing; it is covered
        by the file's content hash. ``False`` saves it only if it was already fitted.
        """
        if variant:
            self.variant_fit()
        return io.save_fit(self, path)

    def __repr__(self) -> str:
        facts = {
            "law": repr(self.law.name),
            "data": repr(self.runs.source),
            "runs": len(self.runs),
            "draws": draws_text(self.posterior),
            "diagnostics": "ok" if self.diagnostics.get("ok") else "FAILED",
        }
        return short_repr("Fit", facts)

    def _repr_html_(self) -> str:
        """The fit as a compact table in Jupyter: law, data, runs, draws, diagnostics, parameters."""
        facts = [
            ("law", self.law.name),
            ("data", self.runs.source),
            ("runs", len(self.runs)),
            ("likelihood", self.likelihood),
            ("draws", draws_text(self.posterior)),
            ("backend", self.sampler.backend),
            ("seed", self.random_seed),
            ("diagnostics", verdict(self.diagnostics)),
        ]
        table = self.summary()
        rows = {str(name): dict(row) for name, row in table.iterrows()}
        return html_card(
            "Scaling-law fit",
            facts,
            rows,
            ["median", "lower", "upper", "r_hat", "ess_bulk", "fixed"],
            self.diagnostics.get("problems", []),
            "90% equal-tailed credible intervals",
        )


#: NUTS target acceptance of laws with pooled parameters: their hierarchy diverged now and then at 0.95.
POOLED_TARGET_ACCEPT = 0.99


#: Sampler settings of :func:`fit_parametric` unless told otherwise; a law with pooled parameters samples
#: at :data:`POOLED_TARGET_ACCEPT` (:func:`sampler_defaults`).
SAMPLER_DEFAULTS: dict[str, Any] = {**BASE_SAMPLER_DEFAULTS, "target_accept": diag.DEFAULT_TARGET_ACCEPT}


def default_target_accept(law: ScalingLaw) -> float:
    """The target acceptance :func:`fit_parametric` samples ``law`` at unless told otherwise."""
    return float(sampler_defaults(law)["target_accept"])


def sampler_defaults(law: ScalingLaw) -> dict[str, Any]:
    """The sampler settings :func:`fit_parametric` samples ``law`` with unless told otherwise."""
    return {**SAMPLER_DEFAULTS, **({"target_accept": POOLED_TARGET_ACCEPT} if law.pooled else {})}


def fit_parametric(
    runs: Any,
    law: str | ScalingLaw = "chinchilla",
    *,
    priors: Mapping[str, Prior | Mapping[str, Any]] | None = None,
    fix: Mapping[str, float] | None = None,
    likelihood: Likelihood = "student_t",
    sampler: SamplerSettings | None = None,
    random_seed: int | None = None,
    progressbar: bool = True,
    warn: bool = True,
) -> Fit:
    """Fit a scaling law to runs and return the posterior as a :class:`Fit`.

    Parameters
    ----------
    runs
        A :class:`~bayescale.Runs`, a DataFrame, a CSV/Parquet path, or the
        name of a bundled data set. With a ``run`` column, rows sharing a label
        are checkpoints of one run and share its offset of log loss (spread
        ``sigma_run``; the offsets are kept orthogonal to the runs' design in
        (1, log N, log D) so they cannot take the law's trend; see the checkpoints guide).
    law
        Name of a registered law (see :func:`bayescale.list_laws`) or a law.
    priors
        Priors overriding the law's defaults, by parameter name.
    fix
        Parameters held at fixed values, by name.
    likelihood
        ``"student_t"`` (default, robust) or ``"normal"`` noise on log loss.
    sampler
        Sampler settings: a :class:`~bayescale.SamplerConfig`, or a mapping of some of
        ``draws``, ``tune``, ``chains``, ``backend`` and ``target_accept`` (the rest from
        :func:`sampler_defaults`: 1000 draws after 1000 tuning steps in each of 4 chains,
        backend ``"auto"``, target acceptance 0.95, and 0.99 for laws with pooled
        parameters, whose hierarchy gave occasional divergences at 0.95), e.g.
        ``{"draws": 500, "chains": 2}``. The backend ``"auto"`` takes ``"jax"`` (the fast
        path: hand-built JAX density, no PyMC; see the README) when numpyro and jax are
        installed and the model is supported, else the fastest installed backend of the
        PyMC model; ``"numpyro"``, ``"nutpie"`` or ``"pymc"`` force one.
    random_seed
        Seed for reproducible draws. When ``None``, one is drawn and kept as the result's
        ``random_seed`` (and saved with it), so the fit can be re-run exactly.
    progressbar
        Show the sampler's progress: a line per stage on stderr, and a bar, only when stderr
        is a terminal (in a log file the stage lines stand alone). On the ``"jax"`` fast path only fits
        long enough to want one show it (observations x iterations of at
        least ``bayescale.inference.fast_path.BAR_WORK``, 2e7: ~15 s and up); the draws
        are the same with or without it.
    warn
        Emit a :class:`~bayescale.inference.diagnostics.FitWarning` when diagnostics fail.

    Returns
    -------
    Fit
    """
    law_obj = get_law(law)
    check_likelihood(likelihood)
    runs_obj = Runs.from_any(runs)
    run_effects = run_labels(runs_obj) is not None
    free, fixed = resolve_priors(law_obj, likelihood, priors, fix, run_effects)

    # Parameters with a prior the user chose (--priors-from, --priors) are constrained by it; a
    # ladder too small for the defaults borrows the law's population prior, or is refused.
    free, borrowed = borrow_for_small_ladder(law_obj, len(runs_obj), free, fixed, priors)
    if borrowed is not None:
        warnings.warn(borrowed_note(borrowed, len(runs_obj), free), RunsWarning, stacklevel=3)
    warn_ladder(runs_obj, law_obj.required_columns)
    scatter = unmeasured_scatter(len(runs_obj), law_obj, free, priors if borrowed is None else free)
    if scatter:
        warnings.warn(scatter, RunsWarning, stacklevel=3)
    config = resolve_sampler(sampler_defaults(law_obj), sampler)
    random_seed = resolve_seed(random_seed)
    idata, used = run_sampler(law_obj, runs_obj, free, fixed, likelihood, config, random_seed, progressbar)
    idata = _tidy(idata, law_obj, runs_obj, fixed, likelihood)
    checked = list(free) + [group_variable(n) for n in law_obj.pooled] + ([RUN_EFFECT] if run_effects else [])
    report = diag.compute(idata, checked)
    result = Fit(
        idata=idata,
        law=law_obj,
        runs=runs_obj,
        priors=free,
        fixed=fixed,
        likelihood=likelihood,
        sampler=SamplerConfig(**{**config.to_dict(), "backend": used}),
        random_seed=random_seed,
        diagnostics=report,
        warn=warn,
    )
    if warn:
        diag.warn_if_failed(report)
        misfit = trend_message(result.residual_trends())
        if misfit:
            warnings.warn(misfit, diag.FitWarning, stacklevel=2)
    if borrowed is not None:
        share = information_message(
            prior_contraction(result.posterior, result.priors), f"the prior {borrowed!r}"
        )
        warnings.warn(share, RunsWarning, stacklevel=2)
    return result


#: A ``--where`` cut is suggested when the runs it drops hold at least this share of the outliers...
CUT_COVERS = 0.8
#: ...and at least this share of the runs it drops are outliers (it spares the good runs).
CUT_PURITY = 0.5


def outlier_cut(frame: pd.DataFrame, outlying: np.ndarray) -> str | None:
    """A ``--where`` filter dropping the outlying runs when they share a range of D or N, else ``None``.

    Among the cuts at each value of tokens or params (dropping the runs below it, or above it),
    the one that drops the fewest runs while dropping :data:`CUT_COVERS` of the outliers, with
    outliers making :data:`CUT_PURITY` of what it drops, and keeping more than half of the runs.
    A cut just above the outliers' median, suggested before, dropped many good runs when the
    outliers were scattered (the bundled Chinchilla runs: ``D >= 8.33e9``).
    """
    is_out = np.zeros(len(frame), dtype=bool)
    is_out[outlying] = True
    best: tuple[int, str] | None = None
    for column, symbol, unit in (("tokens", "D", "tokens"), ("params", "N", "parameters")):
        values = frame[column].to_numpy(dtype=float)
        for cut in np.unique(values):
            for dropped, keep, side in ((values < cut, ">=", "fewer"), (values > cut, "<=", "more")):
                n_dropped, n_out = int(dropped.sum()), int((dropped & is_out).sum())
                if (
                    n_dropped
                    and n_out >= CUT_COVERS * is_out.sum()
                    and n_out >= CUT_PURITY * n_dropped
                    and len(values) - n_dropped > len(values) / 2
                    and (best is None or n_dropped < best[0])
                ):
                    best = (
                        n_dropped,
                        f"{n_out} of them have {side} than {cut:.3g} {unit}, with {n_dropped - n_out} other "
                        f"run(s): try refitting with --where '{symbol} {keep} {cut:.3g}'",
                    )
    return None if best is None else best[1]


def unmeasured_scatter(
    runs: int, law: ScalingLaw, free: Mapping[str, Prior], priors: Mapping[str, Any] | None
) -> str | None:
    """Why ``runs`` runs cannot measure their own scatter ``sigma``, or ``None`` when they can.

    With no more runs than free parameters in the law's mean, the law can pass through every
    run (or nearly: informed priors only bend it), so the likelihood keeps rising as ``sigma``
    falls and the posterior of ``sigma`` slides into its prior's tail near 0: every interval
    narrows, and NUTS fights the funnel (seen on 5 simulated runs at one ratio, true scatter
    0.01: sigma's median 0.0008, 81% of draws at the maximum tree depth; with sigma fixed at the
    truth, 63 leapfrog steps and none).
    """
    if "sigma" not in free or "sigma" in (priors or {}):
        return None
    mean = [p.name for p in law.parameters if p.name in free]
    if runs > len(mean):
        return None
    return (
        f"{runs} runs and {len(mean)} free parameters in the law's mean ({', '.join(mean)}): the law can "
        "pass through every run, so the runs cannot measure their own scatter. sigma's posterior then "
        "slides toward 0, which narrows every interval and slows sampling. Give sigma a prior from the "
        "spread of your seeds, e.g. priors={'sigma': Prior('LogNormal', mu=log(0.01), sigma=0.5)} "
        "(CLI --priors FILE), fix it (--fix sigma=...), or add runs"
    )


def _tidy(idata: Any, law: ScalingLaw, runs: Runs, fixed: Mapping[str, float], likelihood: Likelihood) -> Any:
    """Keep the user-facing parameters, add fixed ones as constants, attach the runs."""
    posterior = container.posterior(idata)
    posterior = posterior.drop_vars([v for v in internal_variables(law) if v in posterior])
    shape = (posterior.sizes["chain"], posterior.sizes["draw"])
    for name, value in fixed.items():
        posterior[name] = (("chain", "draw"), np.full(shape, value))
    run_effects = run_labels(runs) is not None
    order = [p.name for p in model_parameters(law, likelihood, run_effects)]
    order += [group_variable(n) for n in law.pooled] + ([RUN_EFFECT] if run_effects else [])
    posterior = posterior[order]
    groups = {"posterior": posterior, "sample_stats": container.group(idata, "sample_stats")}
    groups["observed_data"] = xr.Dataset(
        {OBSERVED: (("run",), np.log(runs.column("loss")))}, coords={"run": np.arange(len(runs))}
    )
    groups["constant_data"] = runs_to_dataset(runs)
    return container.from_groups(**groups)


io.register_result("fit", Fit)
