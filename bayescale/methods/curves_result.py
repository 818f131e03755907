"""The result of a Bayesian fit of the multi-power law to loss curves (:class:`CurvesFit`).

Its answers: the parameters' intervals, each fitted curve's offset or walk, and the loss along
a new schedule (:meth:`CurvesFit.predict`); saved and loaded as kind ``"curves"``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import pandas as pd
import xarray as xr

from bayescale.data.prepared_curves import CurvesData, ScheduleLike, lr_of, size_label
from bayescale.data.schedule import CurveFeatures, curve_features, summed_lr
from bayescale.data.storage import table_from_dataset, table_to_dataset
from bayescale.errors import BayescaleError
from bayescale.inference import container
from bayescale.inference import diagnostics as diag
from bayescale.inference.sampling import SamplerConfig
from bayescale.methods.saved import MethodResult, check_setting, with_data
from bayescale.model.curve_density import curve_structure
from bayescale.model.curve_laws import (
    features_dict,
    law_parameters,
    multipower_loss,
    noise_site_names,
    offset_terms,
    size_name,
)
from bayescale.model.curve_walk import walk_given, walk_paths, walk_time
from bayescale.model.likelihoods import CORRELATIONS, Correlation
from bayescale.model.priors import Prior, priors_from_json, priors_to_json
from bayescale.posterior.intervals import check_interval, interval_dict

#: Draws evaluated at once by :meth:`CurvesFit.predict` (draws x checkpoints x bins floats).
_DRAW_CHUNK = 100


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
        lr = lr_of("new", {"new": schedule})
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
            log_s1 = np.log(summed_lr(lr_of("new", {"new": schedule}), np.asarray(steps)))
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
