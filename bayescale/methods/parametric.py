"""Fit a scaling law to runs and hold the posterior: :func:`fit_parametric` and :class:`Fit`.

The fit's answers (predict, optimal, ...) are the :class:`~bayescale.methods.fit_answers.FitAnswers`
mixin, its tables (summary, JSON, Jupyter card) :class:`~bayescale.methods.fit_tables.FitTables`, its
caveats :mod:`bayescale.methods.caveats`. The second law answers beyond the runs are blended with
(:meth:`Fit.variant_fit`) is fitted here, beside :func:`fit_parametric`, which it calls.
"""

from __future__ import annotations

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
from bayescale.errors import BayescaleError, LawError, RunsWarning
from bayescale.inference import container
from bayescale.inference import diagnostics as diag
from bayescale.inference.sampling import SAMPLER_DEFAULTS as BASE_SAMPLER_DEFAULTS
from bayescale.inference.sampling import SamplerConfig, SamplerSettings, resolve_sampler, resolve_seed
from bayescale.inference.sampling import run as run_sampler
from bayescale.methods import io
from bayescale.methods.caveats import loo_caveat, nu_caveat
from bayescale.methods.fit_answers import FitAnswers
from bayescale.methods.fit_tables import FitTables
from bayescale.methods.small_ladder import borrow_for_small_ladder, borrowed_note, unmeasured_scatter
from bayescale.model.laws import ScalingLaw, get_law
from bayescale.model.likelihoods import Likelihood
from bayescale.model.priors import Prior
from bayescale.model.pymc_model import (
    OBSERVED,
    RUN_EFFECT,
    check_likelihood,
    group_variable,
    internal_variables,
    model_parameters,
    resolve_priors,
    run_labels,
)
from bayescale.posterior.contraction import information_message
from bayescale.posterior.extrapolation import VARIANT_LAW
from bayescale.posterior.residuals import TREND_ALPHA, log_residuals, residual_frame, trend_message, trends
from bayescale.posterior.result import draws_text, short_repr


@dataclass
class Fit(FitAnswers, FitTables):
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
    prior_set
        The population prior set a ladder too small for the default priors borrowed
        (:mod:`bayescale.methods.small_ladder`), or ``None``; saved with the fit.

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
    diagnostics: diag.Diagnostics
    warn: bool = True
    prior_set: str | None = None
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

        - The Student-t likelihood's degrees of freedom nu below
          :data:`~bayescale.methods.caveats.NU_CAUTION` (posterior median): most runs are treated as
          outliers, so the fit follows a few of them; names the runs lying beyond 3 sigma and a
          ``--where`` filter that would drop them.
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
        return nu_caveat(self, self._own_residuals())

    def _loo_caveat(self, variant: Fit | None) -> str | None:
        return loo_caveat(self, variant)

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
        prior_set=borrowed,
    )
    if warn:
        diag.warn_if_failed(report)
        misfit = trend_message(result.residual_trends())
        if misfit:
            warnings.warn(misfit, diag.FitWarning, stacklevel=2)
    if borrowed is not None:
        share = information_message(result.prior_contraction(), f"the prior {borrowed!r}")
        warnings.warn(share, RunsWarning, stacklevel=2)
    return result


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
