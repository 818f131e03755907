"""Loss curves under learning-rate schedules: the multi-power law fitted in a Bayesian way.

:func:`fit_curves` fits the multi-power law (Luo et al. 2025,
:mod:`bayescale.model.curve_laws`) to the checkpoints of runs of one model size, each with its LR
schedule, and :meth:`CurvesFit.predict` gives the loss along a new schedule with intervals. The
schedule features are computed once in numpy (:mod:`bayescale.data.schedule`); the density is
compiled in JAX and sampled by the project's NUTS driver with its diagnostics. Residuals of one
curve are an AR(1) series by default: successive checkpoints share the run's history.

:func:`fit_curves_least_squares` is the point fit of the same law the way Luo et al. fit it
(Huber loss, delta 1e-3, on log loss), for comparison.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import xarray as xr

from bayescale.data.schedule import BINS, CurveFeatures, Schedule, curve_features, summed_lr
from bayescale.data.storage import table_from_dataset, table_to_dataset
from bayescale.errors import BayescaleError, RunsError
from bayescale.inference import container
from bayescale.inference import diagnostics as diag
from bayescale.inference.sampling import (
    SAMPLER_DEFAULTS,
    SamplerConfig,
    SamplerSettings,
    _scalar_view,
    mode_and_root,
    resolve_sampler,
    sample_density,
)
from bayescale.methods.saved import MethodResult, check_setting, with_data
from bayescale.model.curve_laws import (
    MULTIPOWER_PARAMETERS,
    CurveDensity,
    build_curve_density,
    curve_structure,
    default_priors,
    features_dict,
    law_parameters,
    law_site_names,
    multipower_loss,
    noise_site_names,
    offset_terms,
    size_name,
    walk_given,
    walk_paths,
    walk_time,
)
from bayescale.model.jax_backend import setup_jax
from bayescale.model.likelihoods import CORRELATIONS, Correlation, check_correlation
from bayescale.model.priors import Prior, priors_from_json, priors_to_json
from bayescale.posterior.intervals import check_interval, interval_dict

#: What a schedule may be given as: a description, or the LR at every step 0 .. T-1.
type ScheduleLike = Schedule | np.ndarray | list[float]

#: Checkpoints per curve in the likelihood by default (:func:`thinned`).
MAX_POINTS = 100

#: Draws evaluated at once by :meth:`CurvesFit.predict` (draws x checkpoints x bins floats).
_DRAW_CHUNK = 100


def _lr_of(run: str, schedules: Mapping[str, ScheduleLike]) -> np.ndarray:
    if run not in schedules:
        raise RunsError(
            f"run {run!r} has no learning-rate schedule. A checkpoint in the middle of a decay is not "
            "a run trained to that step: its loss depends on the learning rates seen so far. Give "
            "schedules={run: Schedule(peak_lr=..., horizon=..., warmup=..., shape=...)} or the LR at "
            f"every step; schedules were given for {sorted(schedules)}"
        )
    given = schedules[run]
    lr = given.per_step() if isinstance(given, Schedule) else np.asarray(given, dtype=float)
    if lr.ndim != 1 or not np.all(np.isfinite(lr) & (lr >= 0)):
        raise RunsError(f"run {run!r}: the LR at every step must be a 1-d array of finite values >= 0")
    return lr


@dataclass(frozen=True)
class CurvesData:
    """Checkpoints of the fitted curves, stacked run by run in step order, with their features."""

    frame: pd.DataFrame
    features: CurveFeatures
    curve_index: np.ndarray
    bins: int
    sizes: tuple[str, ...] = ("",)
    log_size: np.ndarray = field(default_factory=lambda: np.zeros(1))
    source: str = "DataFrame"

    @property
    def runs(self) -> list[str]:
        """The curves' run names, in the order of :attr:`curve_index`."""
        return list(dict.fromkeys(self.frame["run"]))

    @property
    def group(self) -> np.ndarray:
        """Each checkpoint's model size, an index into :attr:`sizes`."""
        if "params" not in self.frame.columns:
            return np.zeros(len(self.frame), dtype=int)
        index = {label: i for i, label in enumerate(self.sizes)}
        return self.frame["params"].map(lambda n: index.get(size_label(n), 0)).to_numpy(dtype=int)

    def size_of(self, run: str) -> int:
        """The index in :attr:`sizes` of a fitted run's model size."""
        return int(self.group[np.flatnonzero(self.frame["run"].to_numpy() == run)[0]])

    @property
    def log_s1_ref(self) -> float:
        """Where every curve's random walk starts: the lowest ``log S1`` of the fitted checkpoints."""
        return float(np.log(self.features.s1).min())

    @property
    def lr_ref(self) -> float:
        """The peak LR: the largest LR at which the LR changed (a warm-up's end), else the mean LR."""
        changed = self.features.lr[self.features.weight != 0]
        steps = self.frame["step"].to_numpy() + 1
        return float(changed.max()) if changed.size else float(np.median(self.features.s1 / steps))


def size_label(params: float) -> str:
    """The label of a model size of ``params`` parameters in the names of per-size parameters."""
    return f"{float(params):.4g}"


def thinned(curves: pd.DataFrame, most: int | None) -> pd.DataFrame:
    """At most ``most`` checkpoints of each run, evenly spaced by index, each run's last kept.

    Checkpoints logged every few steps are strongly correlated along a curve (an AR(1) fit of the
    multi-power residuals gives rho 0.99 at 128 steps), so the few hundred that remain carry
    nearly all the information on the law, for a fraction of the cost per gradient.
    """
    if most is None:
        return curves
    if most < 2:
        raise BayescaleError(f"max_points must be at least 2 per curve; got {most}")
    keep = []
    for _, rows in curves.sort_values(["run", "step"], kind="stable").groupby("run", sort=False):
        pick = np.unique(np.linspace(len(rows) - 1, 0, min(len(rows), most)).round().astype(int))
        keep.append(rows.iloc[pick])
    return pd.concat(keep)


def prepare_curves(
    curves: pd.DataFrame, schedules: Mapping[str, ScheduleLike], bins: int = BINS
) -> CurvesData:
    """Validate ``curves`` (columns ``run``, ``step``, ``loss``) and compute each run's features.

    An optional ``params`` column (N, one value per run) makes each distinct N a model size of
    its own (:class:`CurvesData`'s ``sizes``, ordered by N).

    Raises
    ------
    RunsError
        A missing column, a non-positive or non-finite loss, a repeated step in a run, a step
        outside its schedule, a run without a schedule (naming it), or a run with two N.
    """
    if not isinstance(curves, pd.DataFrame):
        raise RunsError(f"curves must be a pandas DataFrame, got {type(curves).__name__}")
    missing = [c for c in ("run", "step", "loss") if c not in curves.columns]
    if missing:
        raise RunsError(
            f"curves need columns run, step, loss; missing {missing} (found {list(curves.columns)})"
        )
    frame = curves.assign(run=curves["run"].astype(str)).sort_values(["run", "step"], kind="stable")
    loss = frame["loss"].to_numpy(dtype=float)
    bad = np.flatnonzero(~(np.isfinite(loss) & (loss > 0)))
    if bad.size:
        row = frame.iloc[bad[0]]
        raise RunsError(
            f"run {row['run']!r} step {row['step']}: loss {row['loss']!r} must be a finite number > 0"
        )
    sizes: tuple[str, ...] = ("",)
    log_size = np.zeros(1)
    if "params" in frame.columns:
        params = frame["params"].to_numpy(dtype=float)
        if not np.all(np.isfinite(params) & (params > 0)):
            raise RunsError("column 'params' (N of each run) must hold finite numbers > 0")
        per_run = frame.groupby("run")["params"].nunique()
        if (per_run > 1).any():
            raise RunsError(f"run {per_run[per_run > 1].index[0]!r} has rows with different params")
        distinct = np.unique(params)
        if len(distinct) > 1:
            sizes = tuple(size_label(n) for n in distinct)
            log_size = np.log(distinct) - np.log(distinct).mean()
    parts, index = [], []
    for i, (run, rows) in enumerate(frame.groupby("run", sort=False)):
        if rows["step"].duplicated().any():
            raise RunsError(
                f"run {run!r} has two checkpoints at step {rows['step'][rows['step'].duplicated()].iloc[0]}"
            )
        parts.append(curve_features(_lr_of(str(run), schedules), rows["step"].to_numpy(), bins))
        index.append(np.full(len(rows), i))
    return CurvesData(
        frame.reset_index(drop=True),
        CurveFeatures.concat(parts),
        np.concatenate(index),
        bins,
        sizes,
        log_size,
    )


@dataclass(repr=False)
class CurvesFit(MethodResult):
    """A Bayesian fit of the multi-power law to loss curves.

    Saved and loaded like every result (``fit.save(path)``, :func:`bayescale.load_fit`): the
    fitted checkpoints and their schedule features travel in the file, so a loaded fit answers
    :meth:`predict` without the schedules it was fitted with.

    Attributes
    ----------
    idata
        Draws (``posterior``, ``sample_stats``).
    data
        The curves fitted (after thinning), with their features.
    priors
        The priors used, by parameter.
    correlation
        ``"ar1"`` or ``"none"``.
    offsets
        Whether each curve has its own offset on log loss (spread ``tau``, integrated out).
    diagnostics
        :func:`bayescale.inference.diagnostics.compute`'s report.
    sampler
        The sampler settings.
    walk
        Whether each curve's discrepancy from the law walks along it (``kappa``, integrated out).
    random_seed
        The seed of the fit.
    """

    title: ClassVar[str] = "multi-power law fit of loss curves"

    idata: Any
    data: CurvesData
    priors: dict[str, Prior]
    correlation: Correlation
    offsets: bool
    diagnostics: diag.Diagnostics
    sampler: SamplerConfig
    walk: bool = False
    random_seed: int | None = None
    _theta: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    _offsets: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def posterior(self) -> Any:
        """Posterior draws of the sampled parameters (dims ``chain``, ``draw``)."""
        return container.posterior(self.idata)

    def to_dict(self, prob: float = 0.9, kind: str = "eti") -> dict[str, Any]:
        """JSON-ready: the law, the curves, the noise model, each parameter's interval, diagnostics."""
        check_interval(prob, kind)
        out: dict[str, Any] = {
            "law": "multi-power law L0 + A S1^-alpha + B LD (Luo et al. 2025)",
            "n_points": len(self.data.frame),
            "runs": self.data.runs,
            "sizes": list(self.sizes),
            "prob": prob,
            "priors": {name: prior.to_dict() for name, prior in sorted(self.priors.items())},
            "correlation": self.correlation,
            "offsets": self.offsets,
            "walk": self.walk,
        }
        out.update({k: _interval(v, prob, kind) for k, v in self.draws().items()})
        out["diagnostics"] = {
            k: self.diagnostics[k] for k in ("divergences", "max_r_hat", "min_ess_bulk", "ok", "problems")
        }
        return out

    def _facts(self) -> dict[str, Any]:
        return {
            "data": self.data.source,
            "curves": len(self.data.runs),
            "checkpoints": len(self.data.frame),
            "noise": ", ".join(
                [
                    "offsets" if self.offsets else "no offsets",
                    "walk" if self.walk else "no walk",
                    self.correlation,
                ]
            ),
        }

    def _intervals(self) -> dict[str, dict[str, float]]:
        return {k: _interval(v) for k, v in self.draws().items()}

    def saved_parts(self) -> tuple[Any, dict[str, Any]]:
        """The draws with the checkpoints fitted and their features (dim ``checkpoint``); the settings."""
        data = self.data
        const = table_to_dataset(data.frame, data.source, "checkpoint")
        f = data.features
        const["_s1"] = ("checkpoint", f.s1)
        for name in ("weight", "lr", "area"):
            const[f"_{name}"] = (("checkpoint", "bin"), getattr(f, name))
        const["_curve_index"] = ("checkpoint", data.curve_index)
        observed = xr.Dataset(
            {"log_loss": (("checkpoint",), np.log(data.frame["loss"].to_numpy(dtype=float)))}
        )
        settings = {
            "correlation": self.correlation,
            "offsets": self.offsets,
            "walk": self.walk,
            "priors": priors_to_json(self.priors),
            "bins": data.bins,
            "sizes": list(data.sizes),
            "log_size": [float(v) for v in data.log_size],
        }
        return with_data(self.idata, const, observed), settings

    @classmethod
    def from_saved(cls, idata: Any, settings: dict[str, Any], common: dict[str, Any]) -> CurvesFit:
        """Rebuild a fit from :meth:`saved_parts`; TypeError for a setting of the wrong type."""
        check_setting("correlation", settings["correlation"], settings["correlation"] in CORRELATIONS)
        for flag in ("offsets", "walk"):
            check_setting(flag, settings[flag], isinstance(settings[flag], bool))
        bins, sizes, log_size = settings["bins"], settings["sizes"], settings["log_size"]
        check_setting("bins", bins, isinstance(bins, int) and bins >= 2)
        check_setting("sizes", sizes, isinstance(sizes, list) and all(isinstance(v, str) for v in sizes))
        check_setting(
            "log_size",
            log_size,
            isinstance(log_size, list)
            and len(log_size) == len(sizes)
            and all(isinstance(v, float) and math.isfinite(v) for v in log_size),
        )
        const = container.group(idata, "constant_data")
        frame, source = table_from_dataset(const)
        features = CurveFeatures(
            *(np.asarray(const[f"_{k}"].values, dtype=float) for k in ("s1", "weight", "lr", "area"))
        )
        curve_index = np.asarray(const["_curve_index"].values, dtype=int)
        if features.weight.shape != (len(frame), bins) or curve_index.shape != (len(frame),):
            raise TypeError("the saved curve features do not match the saved checkpoints")
        data = CurvesData(frame, features, curve_index, bins, tuple(sizes), np.asarray(log_size), source)
        return cls(
            idata=idata,
            data=data,
            priors=priors_from_json(settings["priors"]),
            correlation=settings["correlation"],
            offsets=settings["offsets"],
            walk=settings["walk"],
            **common,
        )

    @property
    def sizes(self) -> tuple[str, ...]:
        """Labels of the fitted model sizes (N to 4 digits); ``("",)`` for a fit of one size."""
        return self.data.sizes

    def draws(self) -> dict[str, np.ndarray]:
        """Every parameter's draws, flattened over chains and draws; ``C`` derived from ``C_ref``."""
        if not self._theta:
            post = container.posterior(self.idata)
            theta = {str(k): np.asarray(post[k]).reshape(-1) for k in post.data_vars}
            theta["C"] = theta["C_ref"] * self.data.lr_ref ** theta["gamma"]
            self._theta.update(theta)
        return self._theta

    def parameters(self, prob: float = 0.9) -> pd.DataFrame:
        """Median and equal-tailed ``prob`` interval of each parameter and curve offset, one row each."""
        check_interval(prob, "eti")
        q = [(1 - prob) / 2, 0.5, (1 + prob) / 2]
        rows = {k: np.quantile(v, q) for k, v in self.draws().items()}
        rows.update({f"offset[{run}]": np.quantile(v, q) for run, v in self.curve_offsets().items()})
        return pd.DataFrame(rows, index=["lower", "median", "upper"]).T[["median", "lower", "upper"]]

    def _size_index(self, size: Any) -> int:
        if len(self.sizes) == 1:
            return 0
        if size is None:
            raise BayescaleError(f"this fit has several model sizes: give size= one of {list(self.sizes)}")
        label = size if isinstance(size, str) else size_label(size)
        if label not in self.sizes:
            raise BayescaleError(
                f"model size {label} was not fitted; the fitted sizes are {list(self.sizes)} (N of the runs)"
            )
        return self.sizes.index(label)

    def law_draws(self, size: Any = None, pick: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """The law's parameters of one fitted model size, per draw (``pick``: which draws)."""
        d = self.draws()
        chosen = {k: v if pick is None else v[pick] for k, v in d.items()}
        return law_parameters(
            chosen, self.sizes, self._size_index(size), self.data.log_size, math.log(self.data.lr_ref)
        )

    def curve_offsets(self) -> dict[str, np.ndarray]:
        """Per fitted run, draws of its offset on log loss; empty without offsets.

        The offsets are integrated out of the likelihood; given each draw of the rest, a run's
        offset is normal (:func:`~bayescale.model.curve_laws.offset_terms`) and is drawn from it
        here (seed 0, so the draws are reproducible).
        """
        if not self.offsets and not self.walk:
            return {}
        if not self._offsets and self.walk:
            rng = np.random.default_rng(0)
            pick = np.arange(len(self.draws()["B"]))
            for run in self.data.runs:
                last = self.data.features.s1[self._rows_of(run)][-1:]
                self._offsets[run] = self._walk_given(run, np.log(last), pick, rng)[:, 0]
        if not self._offsets:
            d = self.draws()
            sigma = np.stack([d[name] for name in noise_site_names(self.sizes, "none", False)], axis=-1)
            group, runs = self.data.group, self.data.runs
            features = features_dict(self.data.features)
            y = np.log(self.data.frame["loss"].to_numpy())
            structure = curve_structure(self.data.curve_index)
            rng = np.random.default_rng(0)
            draws = []
            for start in range(0, len(d["B"]), _DRAW_CHUNK):
                idx = np.arange(start, min(start + _DRAW_CHUNK, len(d["B"])))
                theta = {k: v[idx, None] for k, v in d.items()}
                law = law_parameters(theta, self.sizes, group, self.data.log_size, math.log(self.data.lr_ref))
                resid = y - np.log(multipower_loss(law, features, np))
                rho = theta.get("rho")
                _, a, b = offset_terms(resid, sigma[idx][:, group], rho, structure, self.correlation)
                precision = 1 / theta["tau"] ** 2 + a
                draws.append(b / precision + rng.standard_normal(b.shape) / np.sqrt(precision))
            self._offsets.update(zip(runs, np.concatenate(draws).T, strict=True))
        return self._offsets

    def _rows_of(self, run: str) -> np.ndarray:
        return np.flatnonzero(self.data.frame["run"].to_numpy() == run)

    def _walk_given(
        self, run: str, log_s1: np.ndarray, pick: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        """Draws ``(len(pick), len(log_s1))`` of fitted ``run``'s discrepancy, given its residuals."""
        rows = self._rows_of(run)
        d = self.draws()
        theta = {k: v[pick, None] for k, v in d.items()}
        group = self.data.group[rows]
        law = law_parameters(theta, self.sizes, group, self.data.log_size, math.log(self.data.lr_ref))
        features = features_dict(self._features_of(rows))
        resid = np.log(self.data.frame["loss"].to_numpy()[rows]) - np.log(multipower_loss(law, features, np))
        known = walk_time(features["log_s1"], self.data.log_s1_ref)
        new = walk_time(log_s1, self.data.log_s1_ref)
        tau = d["tau"][pick] if self.offsets else np.zeros(len(pick))
        sigma = self.noise_scale(self.sizes[int(group[0])])[pick]
        return walk_given(resid, known, new, tau, d["kappa"][pick], sigma, rng)

    def _features_of(self, rows: np.ndarray) -> CurveFeatures:
        f = self.data.features
        return CurveFeatures(f.s1[rows], f.weight[rows], f.lr[rows], f.area[rows])

    def noise_scale(self, size: Any = None) -> np.ndarray:
        """Per draw, the marginal sd of a checkpoint's log-loss noise (AR(1): sigma / sqrt(1 - rho^2))."""
        d = self.draws()
        index = self._size_index(size)
        sigma = d[size_name("sigma", self.sizes[index]) if len(self.sizes) > 1 else "sigma"]
        return sigma / np.sqrt(1 - d["rho"] ** 2) if self.correlation == "ar1" else sigma

    def mean_draws(
        self, schedule: ScheduleLike, steps: Any, max_draws: int = 1000, size: Any = None
    ) -> np.ndarray:
        """The law's loss at ``steps`` under ``schedule``, ``(draws, steps)``, thinned to ``max_draws``."""
        lr = _lr_of("new", {"new": schedule})
        features = features_dict(curve_features(lr, np.asarray(steps), self.data.bins))
        pick = _thin(len(self.draws()["B"]), max_draws)
        law = self.law_draws(size, pick)
        out = []
        for start in range(0, len(pick), _DRAW_CHUNK):
            part = slice(start, start + _DRAW_CHUNK)
            theta = {k: np.asarray(v)[part, None] for k, v in law.items()}
            out.append(multipower_loss(theta, features, np))
        return np.concatenate(out)

    def predict(
        self,
        schedule: ScheduleLike,
        steps: Any,
        prob: float = 0.9,
        seed: int = 0,
        max_draws: int = 1000,
        run: str | None = None,
        size: Any = None,
    ) -> pd.DataFrame:
        """Loss at ``steps`` of a run under ``schedule``: median and ``prob`` intervals.

        ``lower`` / ``upper`` bound a new checkpoint's loss: the law's uncertainty, the curve's
        offset and the noise of one checkpoint (the AR(1) series' marginal scale). A new run's
        offset is drawn from ``Normal(0, tau)``, once per draw for the whole curve (with
        ``walk``, a walk from it along the curve); ``run`` names a fitted run to continue instead
        (its own offset, or its walk given its checkpoints, e.g. to a longer horizon).
        ``mean_lower`` / ``mean_upper`` bound the law's mean only (no offset, no noise). In a fit
        of several sizes, ``size`` is the new run's N (one of the fitted sizes); a fitted
        ``run`` brings its own.
        """
        check_interval(prob, "eti")
        if run is not None:
            offsets = self.curve_offsets()
            if run not in offsets:
                raise BayescaleError(
                    f"run {run!r} has no offset in this fit; fitted runs: {sorted(self.data.runs)}"
                    + ("" if self.offsets else " (the fit has no per-curve offsets)")
                )
            size = self.sizes[self.data.size_of(run)]
        mean = self.mean_draws(schedule, steps, max_draws, size)
        pick = _thin(len(self.draws()["B"]), max_draws)
        rng = np.random.default_rng(seed)
        log_noise = rng.standard_normal(mean.shape) * self.noise_scale(size)[pick, None]
        if self.walk:
            log_s1 = np.log(summed_lr(_lr_of("new", {"new": schedule}), np.asarray(steps)))
            if run is not None:
                log_noise += self._walk_given(run, log_s1, pick, rng)
            else:
                d = self.draws()
                tau = d["tau"][pick] if self.offsets else np.zeros(len(pick))
                log_noise += walk_paths(walk_time(log_s1, self.data.log_s1_ref), tau, d["kappa"][pick], rng)
        elif run is not None:
            log_noise += self.curve_offsets()[run][pick, None]
        elif self.offsets:
            log_noise += rng.standard_normal((len(pick), 1)) * self.draws()["tau"][pick, None]
        noisy = mean * np.exp(log_noise)
        q = [(1 - prob) / 2, 0.5, (1 + prob) / 2]
        lo, med, hi = np.quantile(noisy, q, axis=0)
        mlo, mhi = np.quantile(mean, [q[0], q[2]], axis=0)
        return pd.DataFrame(
            {
                "step": np.asarray(steps),
                "median": med,
                "lower": lo,
                "upper": hi,
                "mean_lower": mlo,
                "mean_upper": mhi,
            }
        )


def _interval(draws: np.ndarray, prob: float = 0.9, kind: str = "eti") -> dict[str, float]:
    """:func:`~bayescale.posterior.intervals.interval_dict` of flattened draws."""
    return interval_dict(xr.DataArray(np.asarray(draws)[None, :], dims=("chain", "draw")), prob, kind)


def _thin(total: int, most: int) -> np.ndarray:
    return np.unique(np.linspace(0, total - 1, min(total, most)).round().astype(int))


def fit_curves(
    curves: pd.DataFrame,
    schedules: Mapping[str, ScheduleLike],
    *,
    correlation: Correlation = "none",
    offsets: bool = True,
    walk: bool = False,
    max_points: int | None = MAX_POINTS,
    priors: Mapping[str, Prior] | None = None,
    bins: int = BINS,
    starts: int = 4,
    sampler: SamplerSettings | None = None,
    random_seed: int | None = None,
    progressbar: bool = False,
    warn: bool = True,
) -> CurvesFit:
    """Fit the multi-power law to loss curves, each under its LR schedule, of one or several sizes.

    Parameters
    ----------
    curves
        One row per checkpoint: ``run``, ``step`` (0-based optimiser step), ``loss``; optionally
        ``params`` (N of the run). With several N, one fit covers all sizes: each size has its
        own ``L0``, ``A``, ``alpha`` and ``sigma``, ``B`` is a power of N, and ``C``, ``beta``,
        ``gamma`` and ``tau`` are shared (:func:`~bayescale.model.curve_laws.law_site_names`).
    schedules
        For each run, a :class:`~bayescale.Schedule` or the LR at every step ``0 .. T-1``.
    correlation
        ``"none"`` (default): independent noise around each curve's level; ``"ar1"``: the
        residuals of one curve are an AR(1) series.
    offsets
        Each curve's level is offset from the law by ``o_i ~ Normal(0, tau)`` on log loss
        (default), integrated out; a new run's offset is drawn from ``Normal(0, tau)`` in
        :meth:`CurvesFit.predict`.
    walk
        Each curve's discrepancy from the law walks along the curve from its offset: a Gaussian
        random walk in ``log S1`` of scale ``kappa``, integrated out
        (:func:`~bayescale.model.curve_laws.walk_log_lik`). A run under a new schedule is then
        more uncertain the further along its curve. Takes ``correlation="none"``.
    max_points
        Checkpoints of each curve in the likelihood at most (:func:`thinned`; ``None``: all).
    priors
        Priors replacing :func:`~bayescale.model.curve_laws.default_priors`, by name (``L0``
        for every size, or ``L0[<size>]`` for one).
    bins
        Bins per checkpoint of the loss-drop sum (:func:`~bayescale.data.schedule.curve_features`).
    starts
        Starts of the least-squares fit the posterior mode is searched from.
    sampler, random_seed, progressbar
        Sampler settings (see :func:`bayescale.fit`), seed, progress messages.
    warn
        Emit a :class:`~bayescale.inference.diagnostics.FitWarning` when diagnostics fail.

    Returns
    -------
    CurvesFit

    Examples
    --------
    >>> sched = {"a": bs.Schedule(3e-4, 24000, 2160, "cosine")}  # doctest: +SKIP
    >>> fit = bs.fit_curves(frame, sched)  # doctest: +SKIP
    >>> fit.predict(bs.Schedule(3e-4, 72000, 2160, "cosine"), steps=[71999])  # doctest: +SKIP
    """
    check_correlation(correlation)
    if walk and correlation != "none":
        raise BayescaleError("walk=True takes correlation='none': the walk is the correlation along a curve")
    data = prepare_curves(thinned(curves, max_points), schedules, bins)
    merged = _site_priors(data, priors or {}, correlation, offsets, walk)
    # The mode search starts from the least-squares fit: from the priors' centre BFGS stops on the
    # law's ridges (B, C, beta, gamma trade off) and NUTS on the original coordinates crawls.
    start = _least_squares(data, merged, starts, random_seed or 0)
    law = law_parameters(start, data.sizes, data.group, data.log_size, math.log(data.lr_ref))
    resid = np.log(data.frame["loss"].to_numpy()) - np.log(
        multipower_loss(law, features_dict(data.features), np)
    )
    levels = np.bincount(data.curve_index, weights=resid) / np.bincount(data.curve_index)
    if offsets:
        start["tau"] = max(float(np.sqrt(np.mean(levels**2))), 1e-4)
        resid = resid - levels[data.curve_index]
    same = data.curve_index[1:] == data.curve_index[:-1]
    rho = float(np.clip(np.corrcoef(resid[1:][same], resid[:-1][same])[0, 1], 0.05, 0.95))
    start["rho"] = rho
    for i, name in enumerate(noise_site_names(data.sizes, "none", False)):
        spread = float(np.std(resid[data.group == i]))
        start[name] = spread * math.sqrt(1 - rho**2 if correlation == "ar1" else 1.0)
    if walk:
        # a walk half the noise's size over the curves' span of log S1 (the mode search moves it)
        span = float(np.ptp(np.log(data.features.s1))) or 1.0
        start["kappa"] = 0.5 * float(np.std(resid)) / math.sqrt(span)
    density = build_curve_density(
        data.features,
        data.frame["loss"].to_numpy(),
        data.curve_index,
        merged,
        correlation,
        offsets,
        data.lr_ref,
        start,
        data.sizes,
        data.group,
        data.log_size,
        data.log_s1_ref if walk else None,
    )
    density = _whitened_at_mode(density)
    config = resolve_sampler(SAMPLER_DEFAULTS, sampler)
    if config.backend not in ("auto", "jax"):
        raise BayescaleError(
            f"fit_curves samples the JAX density only; backend {config.backend!r} is not available"
        )
    idata = sample_density(density, config, random_seed, progressbar)
    names = [s.name for s in density.sites]
    view, flat = _scalar_view(idata, names)
    report = diag.compute(view, flat)
    if warn:
        diag.warn_if_failed(report)
    return CurvesFit(idata, data, merged, correlation, offsets, report, config, walk, random_seed)


def _whitened_at_mode(density: CurveDensity) -> CurveDensity:
    """``density`` on coordinates whitened at its posterior mode (Laplace), or itself without a usable mode.

    The project's driver whitens only a posterior close to Gaussian 2 sds out; this one is
    not (its loss-drop parameters bend along a ridge: measured falls of 32-59 against the
    Gaussian's 2 on the 25M curves) and on the original coordinates, which differ in scale by
    ~1e3, NUTS crawls. Whitened, the driver samples these coordinates from jittered starts
    around the mode with a dense mass matrix adapted to what is left.
    """
    jax = setup_jax()
    import jax.numpy as jnp

    data = jax.tree.map(jnp.asarray, density.data)
    value_and_grad = jax.jit(jax.value_and_grad(lambda x: -density.logp(x, data)))
    hessian = jax.jit(jax.hessian(lambda x: -density.logp(x, data)))
    found = mode_and_root(value_and_grad, hessian, density.initial_point())
    return density if found is None else density.whitened(*found)


def _default_priors(data: CurvesData) -> dict[str, Prior]:
    return default_priors(data.lr_ref, float(data.frame["loss"].min()))


def _site_priors(
    data: CurvesData, given: Mapping[str, Prior], correlation: Correlation, offsets: bool, walk: bool = False
) -> dict[str, Prior]:
    """A prior for every sampled parameter: ``given`` by site or base name, else the defaults.

    A size's ``L0`` prior sits below that size's lowest loss.
    """
    base = _default_priors(data)
    names = law_site_names(data.sizes) + noise_site_names(data.sizes, correlation, offsets, walk)
    known = set(base) | set(names)
    unknown = sorted(set(given) - known)
    if unknown:
        raise BayescaleError(f"priors for unknown parameters {unknown}; the parameters are {sorted(known)}")
    out = {}
    group = data.group
    loss = data.frame["loss"].to_numpy()
    for name in names:
        stem = name.split("[")[0]
        if name in given or stem in given:
            out[name] = given[name] if name in given else given[stem]
        elif stem == "L0" and len(data.sizes) > 1:
            size = data.sizes.index(name[3:-1])
            out[name] = default_priors(data.lr_ref, float(loss[group == size].min()))["L0"]
        else:
            out[name] = base[stem]
    return out


def _least_squares(data: CurvesData, priors: Mapping[str, Prior], starts: int, seed: int) -> dict[str, float]:
    """Huber (delta 1e-3) fit of log loss from ``starts`` starts drawn around the priors' centres.

    Over the law's sampled parameters (:func:`~bayescale.model.curve_laws.law_site_names`), the
    positive ones on the log scale; returns their values.
    """
    from scipy.optimize import least_squares

    jax = setup_jax()
    import jax.numpy as jnp

    features = {k: jnp.asarray(v) for k, v in features_dict(data.features).items()}
    y = jnp.asarray(np.log(data.frame["loss"].to_numpy()))
    names = law_site_names(data.sizes)
    logged = np.array([priors[k].distribution == "LogNormal" for k in names])
    log_lr_ref = math.log(data.lr_ref)
    group, log_size = jnp.asarray(data.group), jnp.asarray(data.log_size)

    def theta_of(x: Any, xp: Any) -> dict[str, Any]:
        values = xp.where(xp.asarray(logged), xp.exp(x), x)
        return {k: values[i] for i, k in enumerate(names)}

    def resid(x: Any) -> Any:
        law = law_parameters(theta_of(x, jnp), data.sizes, group, log_size, log_lr_ref, jnp)
        loss = multipower_loss(law, features, jnp)
        r = y - jnp.log(jnp.where(loss > 0, loss, 1e-300))
        return jnp.where(jnp.isfinite(r), r, 1e3)

    value, jacobian = jax.jit(resid), jax.jit(jax.jacfwd(resid))
    rng = np.random.default_rng(seed)
    best: Any = None
    for _ in range(starts):
        x0 = np.array([rng.normal(priors[k].kwargs["mu"], 0.5 * priors[k].kwargs["sigma"]) for k in names])
        res = least_squares(
            lambda x: np.asarray(value(x)),
            x0,
            jac=lambda x: np.asarray(jacobian(x)),
            loss="huber",
            f_scale=1e-3,
            method="trf",
            max_nfev=500,
        )
        if best is None or res.cost < best.cost:
            best = res
    return {k: float(v) for k, v in theta_of(best.x, np).items()}


def fit_curves_least_squares(
    curves: pd.DataFrame,
    schedules: Mapping[str, ScheduleLike],
    bins: int = BINS,
    starts: int = 20,
    seed: int = 0,
) -> dict[str, float]:
    """The multi-power law's point fit as Luo et al. make it: Huber (delta 1e-3) on log loss.

    Minimised with scipy's ``least_squares`` (``loss="huber"``, Jacobian by JAX) over the log
    parameters from ``starts`` starts drawn around the default priors' centres; the best end
    point is returned: the law's parameters (:data:`MULTIPOWER_PARAMETERS`) for one size, the
    sampled ones (``L0[<size>]``, ..., ``B_slope``, ``C_ref``) when ``curves`` has several N.
    """
    data = prepare_curves(curves, schedules, bins)
    fitted = _least_squares(data, _site_priors(data, {}, "none", False), starts, seed)
    if len(data.sizes) > 1:
        return fitted
    law = law_parameters(fitted, data.sizes, 0, data.log_size, math.log(data.lr_ref))
    return {k: float(law[k]) for k in MULTIPOWER_PARAMETERS}
