"""IsoFLOP profiles (Hoffmann et al. 2022, Approach 2) as one hierarchical model.

Runs are grouped into compute budgets. Within budget ``c`` the log loss is a
parabola in ``x = log N`` with its vertex at ``x*_c``; the vertices lie on the
line ``x*_c = log k + a log C_c`` up to a scatter ``tau``. Everything is sampled
jointly, so the uncertainty of each budget's minimum flows into ``a`` (and into
``b = 1 - a`` under ``C = kappa N D``), unlike a two-stage fit that regresses
point estimates of the minima.

The runs' grouping into budgets and the profile window are in :mod:`bayescale.data.isoflop`, the
PyMC model and its default priors in :mod:`bayescale.model.isoflop`; their names are importable
from here as before.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import xarray as xr

from bayescale.data.isoflop import (
    DEFAULT_BUDGET_TOL,
    DEFAULT_WINDOW,
    EDGE_SIZE_TOL,
    MIN_SIZES,
    IsoflopData,
    bracketed_levels,
    group_budgets,
    in_window,
    left_out_unbracketed,
    near_best,
    prepare,
)
from bayescale.data.runs import Runs
from bayescale.data.storage import runs_from_dataset, runs_to_dataset
from bayescale.errors import BayescaleError, RunsError
from bayescale.inference import container
from bayescale.inference.diagnostics import Diagnostics
from bayescale.inference.sampling import SAMPLER_DEFAULTS as BASE_SAMPLER_DEFAULTS
from bayescale.inference.sampling import (
    SamplerConfig,
    SamplerSettings,
    resolve_sampler,
    resolve_seed,
    sample_checked,
)
from bayescale.methods.saved import (
    MethodResult,
    check_setting,
    frame_from_variables,
    frame_to_variables,
    priors_setting,
    with_data,
)
from bayescale.model.isoflop import (
    LOG_CURVATURE,
    NOT_OVERRIDABLE,
    POSITIVE,
    SHAPES,
    SKEW,
    TAU,
    X_CENTER,
    A,
    build_model,
    default_priors,
    resolve_priors,
)
from bayescale.model.likelihoods import LIKELIHOODS, Likelihood
from bayescale.model.priors import Prior, priors_to_json
from bayescale.posterior.intervals import AllocationAnswers, interval_dict, interval_table
from bayescale.posterior.query import make_query

__all__ = [
    "DEFAULT_BUDGET_TOL",
    "DEFAULT_WINDOW",
    "EDGE_SIZE_TOL",
    "GLOBAL_PARAMETERS",
    "LOG_CURVATURE",
    "MIN_SIZES",
    "NOT_OVERRIDABLE",
    "POSITIVE",
    "SAMPLER_DEFAULTS",
    "SHAPES",
    "SKEW",
    "TAU",
    "X_CENTER",
    "A",
    "IsoflopData",
    "IsoflopFit",
    "bracketed_levels",
    "build_model",
    "default_priors",
    "fit_isoflop",
    "group_budgets",
    "in_window",
    "left_out_unbracketed",
    "near_best",
    "prepare",
    "resolve_priors",
]

#: Sampled parameters checked by the diagnostics (the per-budget ones are checked too).
GLOBAL_PARAMETERS = ["a", "x_center", "tau", "sigma", "nu", "skew"]


#: Sampler settings of :func:`fit_isoflop` unless told otherwise (``sampler=`` or keywords).
SAMPLER_DEFAULTS: dict[str, Any] = {**BASE_SAMPLER_DEFAULTS, "target_accept": 0.95}


@dataclass(repr=False)
class IsoflopFit(MethodResult, AllocationAnswers):
    """Posterior of the IsoFLOP model: exponents, per-budget optima and the plan at any budget.

    Attributes
    ----------
    idata
        ``xarray.DataTree`` (:mod:`~bayescale.inference.container`); the posterior holds ``a``, ``log_k``,
        ``tau`` (scatter of the log optima about the line), per-budget
        ``log_params_opt``, ``log_loss_opt`` and ``curvature``.
    data
        The runs with their budget grouping (``data.budgets``).
    priors
        The prior of every parameter of :func:`default_priors` the fit used.
    diagnostics
        r_hat, bulk ESS and divergences of the sampled parameters.
    """

    title: ClassVar[str] = "IsoFLOP fit (Approach 2)"

    idata: Any
    data: IsoflopData
    shape: str
    likelihood: Likelihood
    priors: dict[str, Prior]
    sampler: SamplerConfig
    random_seed: int | None
    diagnostics: Diagnostics

    @property
    def posterior(self) -> xr.Dataset:
        """Posterior draws (dims ``chain``, ``draw`` and ``budget``)."""
        return container.posterior(self.idata)

    @property
    def budgets(self) -> pd.DataFrame:
        """The budget grouping: one row per level, with ``used`` saying whether it entered the fit."""
        return self.data.budgets

    def exponent_draws(self) -> xr.Dataset:
        """Draws of ``a`` (N_opt ∝ C^a) and ``b = 1 - a`` (D_opt ∝ C^b, from C = kappa N D)."""
        a = self.posterior["a"]
        return xr.Dataset({"a": a, "b": 1.0 - a})

    def optimal_draws(self, compute: Any) -> xr.Dataset:
        """Draws of ``params``, ``tokens`` and ``tokens_per_param`` at each budget (dim ``query``)."""
        query = make_query(compute=compute)
        log_c = np.log(query["compute"])
        log_n = self.posterior["log_k"] + self.posterior["a"] * log_c
        params = np.exp(log_n)
        tokens = query["compute"] / (self.data.kappa * params)
        out = xr.Dataset({"params": params, "tokens": tokens, "tokens_per_param": tokens / params})
        return out.transpose("chain", "draw", "query")

    def budget_table(self, prob: float = 0.9, kind: str = "eti") -> pd.DataFrame:
        """Per used budget: the budget, its runs, and the optimum ``params`` and ``loss`` with intervals."""
        post = self.posterior
        draws = xr.Dataset(
            {"params_opt": np.exp(post["log_params_opt"]), "loss_opt": np.exp(post["log_loss_opt"])}
        )
        draws = draws.rename({"budget": "query"})
        used = self.budgets[self.budgets["used"]].reset_index(drop=True)
        query = xr.Dataset(
            {"budget": ("query", used["budget"].to_numpy()), "n_runs": ("query", used["n_runs"].to_numpy())}
        )
        return interval_table(draws, prob, kind, query)

    def to_dict(self, prob: float = 0.9, kind: str = "eti") -> dict[str, Any]:
        """JSON-ready: exponents, grouping, kappa and diagnostics."""
        return {
            "n_runs": int(self.data.used.sum()),
            "prob": prob,
            "priors": {name: prior.to_dict() for name, prior in sorted(self.priors.items())},
            **self.exponents(prob, kind),
            "log_k": interval_dict(self.posterior["log_k"], prob, kind),
            "tau": interval_dict(self.posterior["tau"], prob, kind),
            "shape": self.shape,
            "window": self.data.window,
            "neighbours": self.data.neighbours,
            "bracketed": self.data.bracketed,
            "kappa": self.data.kappa,
            "kappa_spread": self.data.kappa_spread,
            "budgets": self.budgets.to_dict("records"),
            "diagnostics": {
                k: self.diagnostics[k] for k in ("divergences", "max_r_hat", "min_ess_bulk", "ok", "problems")
            },
        }

    def saved_parts(self) -> tuple[Any, dict[str, Any]]:
        """The draws with the runs, budget grouping and runs used in ``constant_data``; the settings."""
        data = self.data
        const = runs_to_dataset(data.runs)
        const["_level"] = ("run", np.asarray(data.level, dtype=int))
        const["_used"] = ("run", np.asarray(data.used, dtype=bool))
        const = const.assign(frame_to_variables(data.budgets, "_budgets_", "budget"))
        settings = {
            "shape": self.shape,
            "likelihood": self.likelihood,
            "priors": priors_to_json(self.priors),
            "kappa": data.kappa,
            "kappa_spread": data.kappa_spread,
            "window": data.window,
            "neighbours": data.neighbours,
            "bracketed": data.bracketed,
            "budget_columns": [str(c) for c in data.budgets.columns],
        }
        return with_data(self.idata, const), settings

    @classmethod
    def from_saved(cls, idata: Any, settings: dict[str, Any], common: dict[str, Any]) -> IsoflopFit:
        """Rebuild a fit from :meth:`saved_parts`; TypeError for a setting of the wrong type."""
        const = container.group(idata, "constant_data")
        window, neighbours = settings["window"], settings["neighbours"]
        check_setting("shape", settings["shape"], settings["shape"] in SHAPES)
        check_setting("likelihood", settings["likelihood"], settings["likelihood"] in LIKELIHOODS)
        check_setting("window", window, window is None or (_number(window) and window > 0))
        check_setting(
            "neighbours", neighbours, neighbours is None or (type(neighbours) is int and neighbours > 0)
        )
        check_setting("bracketed", settings["bracketed"], isinstance(settings["bracketed"], bool))
        for key in ("kappa", "kappa_spread"):
            check_setting(key, settings[key], _number(settings[key]) and settings[key] > 0)
        budgets = frame_from_variables(const, "_budgets_", settings["budget_columns"])
        data = IsoflopData(
            runs=runs_from_dataset(const),
            budgets=budgets.astype({"used": bool, "bracketed": bool}),
            level=np.asarray(const["_level"].values, dtype=int),
            used=np.asarray(const["_used"].values, dtype=bool),
            kappa=float(settings["kappa"]),
            kappa_spread=float(settings["kappa_spread"]),
            window=None if window is None else float(window),
            neighbours=neighbours,
            bracketed=settings["bracketed"],
        )
        priors = resolve_priors(settings["likelihood"], settings["shape"], priors_setting(settings))
        return cls(
            idata=idata,
            data=data,
            shape=settings["shape"],
            likelihood=settings["likelihood"],
            priors=priors,
            **common,
        )

    def _facts(self) -> dict[str, Any]:
        used = self.budgets["used"]
        return {
            "data": self.data.runs.source,
            "runs": f"{int(self.data.used.sum())} of {len(self.data.runs)} in the fit",
            "budgets": f"{int(used.sum())} of {len(used)} used",
            "profiles": f"{self.shape}, {self.likelihood} noise",
        }

    def _intervals(self) -> dict[str, dict[str, float]]:
        post = self.posterior
        return {**self.exponents(), "log_k": interval_dict(post["log_k"]), "tau": interval_dict(post["tau"])}


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and bool(np.isfinite(value))


def fit_isoflop(
    runs: Any,
    *,
    group: str | None = None,
    budget_tol: float = DEFAULT_BUDGET_TOL,
    window: float | None = DEFAULT_WINDOW,
    neighbours: int | None = None,
    bracketed: bool = True,
    shape: str = "skewed",
    likelihood: Likelihood = "student_t",
    priors: Mapping[str, Prior | Mapping[str, Any]] | None = None,
    sampler: SamplerSettings | None = None,
    random_seed: int | None = None,
    progressbar: bool = True,
    warn: bool = True,
) -> IsoflopFit:
    """Fit IsoFLOP profiles and the power law of their minima in one model.

    Parameters
    ----------
    runs
        Runs (a :class:`~bayescale.Runs`, DataFrame, CSV/Parquet path or
        bundled name) with ``params``, ``tokens``, ``loss`` and optionally
        ``compute`` (default 6ND).
    group
        Keep only the runs of this ``group`` label (required when the runs
        hold several groups, e.g. the settings of ``porian-isoflop``).
    budget_tol
        Runs whose compute differs by less than this fraction share a budget;
        the grouping is in :attr:`IsoflopFit.budgets`.
    window
        Fit each budget's profile on its runs whose log loss is within this
        of the budget's lowest (default 0.1: loss within ~10.5%); ``None``
        fits every run. A budget with fewer than 3 sizes in the window is left
        out and flagged (``n_in_window`` and ``used`` in :attr:`IsoflopFit.budgets`).
    neighbours
        Also keep only runs within this many sizes (by rank) of each budget's best, and
        leave out budgets whose best is their smallest or largest size (Porian et al.'s
        rule; :func:`near_best`). ``None`` (default) applies no such limit.
    bracketed
        Leave out budgets whose lowest-loss run is their smallest or largest size (or within
        :data:`EDGE_SIZE_TOL`, 10%, of it): their minimum is not bracketed by the sizes run, so
        the fit extrapolates it. Unlike ``neighbours`` (whose rank rule has no tolerance) it
        keeps every run of the other budgets. The budgets left out have ``bracketed`` false
        and ``used`` false in :attr:`IsoflopFit.budgets` (and in :meth:`IsoflopFit.summary`).
        Default ``True`` (since session 5: on Gemstones' profiles read off the curves it turns
        failed diagnostics into passed ones and moves no Chinchilla or Porian result outside
        its interval, ``benchmarks/results/isoflop_bracketed.txt``); ``False`` fits every
        budget, as before.
    shape
        Profile of log loss against log N within a budget: ``"skewed"``
        (default) or ``"parabola"`` (Hoffmann et al.); see :data:`SHAPES`.
    likelihood
        ``"student_t"`` (default) or ``"normal"`` noise on log loss about the parabolas.
    priors
        Priors replacing the defaults (:func:`default_priors`), by parameter name; ``tau``,
        ``sigma`` and ``nu`` keep priors on positive values. ``log_loss_opt`` (centred on each
        budget's best run) and ``vertex_z`` (standard normal) take none.
    sampler, random_seed, progressbar
        Sampler settings, seed and progress bar (see :func:`bayescale.fit`); the sampler's
        defaults are :data:`SAMPLER_DEFAULTS`.
    warn
        Emit a :class:`~bayescale.inference.diagnostics.FitWarning` when diagnostics fail.

    Returns
    -------
    IsoflopFit
    """
    runs_obj = Runs.from_any(runs)
    if group is not None:
        if "group" not in runs_obj.frame.columns:
            raise RunsError(f"group={group!r} given but the runs have no 'group' column")
        labels = sorted(runs_obj.frame["group"].unique())
        if group not in labels:
            raise RunsError(f"no runs in group {group!r}; groups: {labels}")
        runs_obj = runs_obj.subset(runs_obj.frame["group"].to_numpy() == group)
    if shape not in SHAPES:
        raise BayescaleError(f"unknown profile shape {shape!r}; use one of {list(SHAPES)}")
    merged = resolve_priors(likelihood, shape, priors)
    data = prepare(runs_obj, budget_tol, window=window, neighbours=neighbours, bracketed=bracketed)
    config = resolve_sampler(SAMPLER_DEFAULTS, sampler)
    random_seed = resolve_seed(random_seed)
    names = [*GLOBAL_PARAMETERS, "vertex_z", "log_loss_opt", "log_curvature"]
    idata, report, used = sample_checked(
        build_model(data, likelihood, shape, merged), names, config, random_seed, progressbar, warn
    )
    return IsoflopFit(
        idata=idata,
        data=data,
        shape=shape,
        likelihood=likelihood,
        priors=merged,
        sampler=used,
        random_seed=random_seed,
        diagnostics=report,
    )
