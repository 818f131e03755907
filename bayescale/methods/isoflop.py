"""IsoFLOP profiles (Hoffmann et al. 2022, Approach 2) as one hierarchical model.

Runs are grouped into compute budgets. Within budget ``c`` the log loss is a
parabola in ``x = log N`` with its vertex at ``x*_c``; the vertices lie on the
line ``x*_c = log k + a log C_c`` up to a scatter ``tau``. Everything is sampled
jointly, so the uncertainty of each budget's minimum flows into ``a`` (and into
``b = 1 - a`` under ``C = kappa N D``), unlike a two-stage fit that regresses
point estimates of the minima.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import xarray as xr

from bayescale.data.runs import Runs
from bayescale.data.storage import runs_from_dataset, runs_to_dataset
from bayescale.errors import BayescaleError, RunsError
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
from bayescale.methods.saved import (
    MethodResult,
    check_setting,
    frame_from_variables,
    frame_to_variables,
    priors_setting,
    with_data,
)
from bayescale.model.laws.base import Parameter
from bayescale.model.likelihoods import LIKELIHOODS, Likelihood, pymc_noise
from bayescale.model.priors import Prior, override_priors, priors_to_json
from bayescale.model.pymc_model import NU, SIGMA
from bayescale.posterior.intervals import AllocationAnswers, interval_dict, interval_table
from bayescale.posterior.query import make_query

#: Budgets whose compute differs by less than this fraction are one budget level.
DEFAULT_BUDGET_TOL = 0.1

#: Default profile window: a budget's runs enter the fit when their log loss is within this of
#: the budget's lowest (loss at most ~10.5% above it). Far from the minimum no smooth bowl fits:
#: on Porian et al.'s final setting the loss of over-sized, under-trained models climbs to twice
#: the minimum, and fitting those points drove a Student-t fit to nu ~ 0.5 and poor mixing.
DEFAULT_WINDOW = 0.1

#: Fewest distinct model sizes (in the window) a budget needs to enter the fit.
MIN_SIZES = 3

#: With ``bracketed``, a budget's best size within this fraction of its smallest or largest size
#: counts as that end (the grouping tolerance of budgets, reused). On Gemstones' profiles read off
#: the curves it also catches best sizes 1.03e8 next to 1.04e8 and 1.92e9 next to 2.01e9; any
#: value in [0.045, 0.145) flags the same budgets there, and 0 and 0.1 flag the same on Chinchilla
#: and on all 15 Porian settings (benchmarks/results/isoflop_bracketed.txt).
EDGE_SIZE_TOL = 0.1

#: Sampled parameters checked by the diagnostics (the per-budget ones are checked too).
GLOBAL_PARAMETERS = ["a", "x_center", "tau", "sigma", "nu", "skew"]

#: Shapes of one budget's profile of log loss against u = log N - log N*:
#: ``parabola`` k u^2 (Hoffmann et al.), ``skewed`` 2k (e^(s u) - 1 - s u) / s^2, which tends to
#: the parabola as s -> 0 and lets the loss rise faster on one side (large, under-trained models).
SHAPES = ("parabola", "skewed")

#: Sampler settings of :func:`fit_isoflop` unless told otherwise (``sampler=`` or keywords).
SAMPLER_DEFAULTS: dict[str, Any] = {**BASE_SAMPLER_DEFAULTS, "target_accept": 0.95}


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


def group_budgets(compute: np.ndarray, tol: float = DEFAULT_BUDGET_TOL) -> tuple[np.ndarray, pd.DataFrame]:
    """Group runs into budget levels: sorted budgets closer than ``tol`` (relative) join one level.

    Returns
    -------
    level, table
        The level index of every run, and one row per level: ``budget`` (the
        geometric mean of its runs' compute), ``n_runs``, ``compute_min``,
        ``compute_max``.
    """
    if not 0 <= tol < 1:
        raise BayescaleError(f"budget tolerance must be in [0, 1), got {tol!r}")
    log_c = np.log(np.asarray(compute, dtype=float))
    order = np.argsort(log_c, kind="stable")
    gaps = np.diff(log_c[order]) > np.log1p(tol)
    level_sorted = np.concatenate([[0], np.cumsum(gaps)])
    level = np.empty_like(level_sorted)
    level[order] = level_sorted
    frame = pd.DataFrame({"level": level, "compute": np.exp(log_c)})
    table = frame.groupby("level")["compute"].agg(
        budget=lambda c: float(np.exp(np.mean(np.log(c)))),
        n_runs="size",
        compute_min="min",
        compute_max="max",
    )
    return level, table.reset_index(drop=True)


@dataclass(frozen=True)
class IsoflopData:
    """The runs prepared for the model: budgets, log sizes, log losses."""

    runs: Runs
    budgets: pd.DataFrame
    level: np.ndarray
    used: np.ndarray
    kappa: float
    kappa_spread: float
    window: float | None = None
    neighbours: int | None = None
    bracketed: bool = True


def in_window(level: np.ndarray, loss: np.ndarray, window: float | None) -> np.ndarray:
    """True for runs whose log loss is within ``window`` of their budget's lowest (all when None)."""
    if window is None:
        return np.ones(len(level), dtype=bool)
    if not window > 0:
        raise BayescaleError(f"profile window must be positive (a log-loss excess), got {window!r}")
    log_loss = np.log(np.asarray(loss, dtype=float))
    best = pd.Series(log_loss).groupby(level).transform("min").to_numpy()
    return log_loss <= best + window


def bracketed_levels(
    level: np.ndarray, params: np.ndarray, loss: np.ndarray, size_tol: float = 0.0
) -> pd.Series:
    """Per budget level: True when its lowest-loss size is neither its smallest nor its largest size.

    A best size within ``size_tol`` (relative) of the smallest or largest counts as that end:
    a run only 1% larger than the best does not show where the loss turns up. An unbracketed
    budget locates its minimum only by extrapolating the profile past the sizes run; a budget
    with one size is unbracketed.
    """
    if not 0 <= size_tol < 1:
        raise BayescaleError(f"size tolerance must be in [0, 1), got {size_tol!r}")
    frame = pd.DataFrame({"level": level, "params": params, "loss": loss})
    best = frame.loc[frame.groupby("level")["loss"].idxmin()].set_index("level")["params"]
    sizes = frame.groupby("level")["params"]
    return (best > sizes.min() * (1 + size_tol)) & (best * (1 + size_tol) < sizes.max())


def left_out_unbracketed(budgets: Any) -> Any:
    """Budgets (a ``budgets`` table or one of its records) left out for an unbracketed minimum alone.

    They are not used although enough sizes (:data:`MIN_SIZES`) are in their window: with the
    ``bracketed`` option that happens only to budgets whose minimum is not bracketed.
    """
    return ~np.asarray(budgets["used"], dtype=bool) & (np.asarray(budgets["n_in_window"]) >= MIN_SIZES)


def near_best(level: np.ndarray, params: np.ndarray, loss: np.ndarray, neighbours: int | None) -> np.ndarray:
    """True for runs within ``neighbours`` sizes (by rank) of their budget's lowest-loss size.

    A budget whose lowest loss is at its smallest or largest size keeps no runs: its
    minimum is not bracketed (:func:`bracketed_levels`). This is Porian et al.'s (2024) rule:
    they interpolate each budget's losses (Akima, a local cubic: each piece depends on two
    sizes either side) and drop budgets whose minimum falls at an end of the size range.
    ``None`` keeps every run.
    """
    if neighbours is None:
        return np.ones(len(level), dtype=bool)
    if not (isinstance(neighbours, int | np.integer) and neighbours >= 1):
        raise BayescaleError(f"neighbours must be a positive integer, got {neighbours!r}")
    frame = pd.DataFrame({"level": level, "params": params, "loss": loss})
    frame["rank"] = frame.groupby("level")["params"].rank(method="dense")
    best_rank = frame["level"].map(
        frame.loc[frame.groupby("level")["loss"].idxmin()].set_index("level")["rank"]
    )
    bracketed = frame["level"].map(bracketed_levels(level, params, loss))
    return ((frame["rank"] - best_rank).abs() <= neighbours).to_numpy() & bracketed.to_numpy(dtype=bool)


def prepare(
    runs: Runs,
    budget_tol: float = DEFAULT_BUDGET_TOL,
    min_sizes: int = MIN_SIZES,
    window: float | None = DEFAULT_WINDOW,
    neighbours: int | None = None,
    bracketed: bool = True,
) -> IsoflopData:
    """Group ``runs`` into budgets and keep the runs and budgets the profiles are fitted on.

    A run enters when its log loss is within ``window`` of its budget's lowest; a budget
    enters when at least ``min_sizes`` distinct sizes do. With ``neighbours``, a run must also
    be within that many sizes of the budget's best (:func:`near_best`). With ``bracketed`` (default), a
    budget must also have its lowest loss at neither its smallest nor its largest size, sizes
    within :data:`EDGE_SIZE_TOL` of an end counting as that end (:func:`bracketed_levels`; the
    ``bracketed`` column of ``budgets`` says which do, and ``used`` is false for those left out).

    ``kappa`` is the geometric mean of ``C / (N D)`` over the runs (6 when
    compute defaults to 6ND); ``kappa_spread`` is max/min of that ratio.
    """
    if "group" in runs.frame.columns and runs.frame["group"].nunique() > 1:
        groups = sorted(runs.frame["group"].unique())
        raise RunsError(
            f"the runs hold {len(groups)} groups {groups}; an IsoFLOP fit takes one: "
            "select it with group=... (CLI: --group)"
        )
    level, budgets = group_budgets(runs.column("compute"), budget_tol)
    near = in_window(level, runs.column("loss"), window) & near_best(
        level, runs.column("params"), runs.column("loss"), neighbours
    )
    params = pd.Series(runs.column("params"))
    budgets["n_sizes"] = params.groupby(level).nunique().to_numpy()
    budgets["n_in_window"] = params[near].groupby(level[near]).nunique().reindex(budgets.index, fill_value=0)
    edges = bracketed_levels(level, runs.column("params"), runs.column("loss"), EDGE_SIZE_TOL)
    budgets["bracketed"] = edges.to_numpy()
    budgets["used"] = (budgets["n_in_window"] >= min_sizes) & (budgets["bracketed"] | (not bracketed))
    if int(budgets["used"].sum()) < 2:
        raise RunsError(
            f"an IsoFLOP fit needs at least 2 budgets with >= {min_sizes} model sizes each"
            f"{' and a bracketed minimum' if bracketed else ''}; "
            f"found {int(budgets['used'].sum())} among {len(budgets)} budget level(s) "
            f"(grouping tolerance {budget_tol:g}, window {window}): "
            f"{budgets[['budget', 'n_sizes', 'n_in_window', 'bracketed']].to_dict('records')}"
        )
    ratio = runs.column("compute") / (runs.column("params") * runs.column("tokens"))
    return IsoflopData(
        runs=runs,
        budgets=budgets,
        level=level,
        used=budgets["used"].to_numpy()[level] & near,
        kappa=float(np.exp(np.mean(np.log(ratio)))),
        kappa_spread=float(ratio.max() / ratio.min()),
        window=window,
        neighbours=neighbours,
        bracketed=bracketed,
    )


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
    diagnostics: dict[str, Any]

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


io.register_result("isoflop", IsoflopFit)


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
