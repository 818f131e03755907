"""Training-curve envelope (Hoffmann et al. 2022, Approach 1) with within-run correlation.

Each run's curve is smoothed by ``log L_r(D) = log(E_r + G_r (D / D_r)^-beta_r)``, D_r the
geometric mean of the run's checkpoint tokens.
Checkpoints of one run share its history, so the residuals about the curve are
an AR(1) series in checkpoint order (``correlation="ar1"``, default), not
independent draws (``correlation="none"``, which gives overconfident intervals).

For every posterior draw, the envelope at each compute C of a grid is the run
with the lowest smoothed loss at D = C / (kappa N_r) among the runs whose
observed tokens cover that D; a line through log N_opt against log C (points
where the winner is the smallest or largest run available are left out, since
the true optimum may lie beyond) gives ``a`` per draw, and ``b = 1 - a``.

The curves' arrays are prepared by :mod:`bayescale.data.envelope`, the PyMC model and its default
priors are in :mod:`bayescale.model.envelope` (their names importable from here as before); the
Laplace whitening of the model (:func:`laplace`), which uses the compiled-program cache, the
compute grid, the answers and the fit are here.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, ClassVar, cast

import numpy as np
import pandas as pd
import xarray as xr

from bayescale.data.curves import Curves
from bayescale.data.envelope import CurveData, prepare
from bayescale.data.storage import table_from_dataset, table_to_dataset
from bayescale.errors import RunsError
from bayescale.inference import container
from bayescale.inference.diagnostics import Diagnostics
from bayescale.inference.sampling import SAMPLER_DEFAULTS as BASE_SAMPLER_DEFAULTS
from bayescale.inference.sampling import (
    SamplerConfig,
    SamplerSettings,
    _cached_program,
    choose_backend,
    mode_and_root,
    resolve_sampler,
    resolve_seed,
    sample_checked,
    setup_jax,
)
from bayescale.methods.saved import (
    MethodResult,
    check_setting,
    frame_from_variables,
    frame_to_variables,
    priors_setting,
    with_data,
)
from bayescale.model.envelope import (
    BETA,
    G_AT_REF,
    LOG_SCALE,
    NOT_OVERRIDABLE,
    _log_e_prior_mean,
    build_model,
    default_priors,
    resolve_priors,
)
from bayescale.model.likelihoods import CORRELATIONS, Correlation
from bayescale.model.priors import Prior, priors_to_json
from bayescale.posterior.intervals import AllocationAnswers, interval_dict
from bayescale.posterior.query import make_query

__all__ = [
    "BETA",
    "G_AT_REF",
    "LOG_SCALE",
    "MIN_RUNS_AT_COMPUTE",
    "NOT_OVERRIDABLE",
    "SAMPLER_DEFAULTS",
    "CurveData",
    "EnvelopeFit",
    "build_model",
    "compute_grid",
    "default_priors",
    "fit_envelope",
    "laplace",
    "prepare",
    "resolve_priors",
]

#: Sampler settings of :func:`fit_envelope` unless told otherwise (``sampler=`` or keywords).
SAMPLER_DEFAULTS: dict[str, Any] = {**BASE_SAMPLER_DEFAULTS, "target_accept": 0.9}

#: Least number of runs covering a compute for it to enter the envelope grid.
MIN_RUNS_AT_COMPUTE = 3


def laplace(
    data: CurveData, correlation: Correlation = "ar1", priors: Mapping[str, Prior] | None = None
) -> tuple[np.ndarray, np.ndarray] | None:
    """Posterior mode on the unconstrained scale and the Cholesky factor of the inverse Hessian there.

    ``None`` when the search fails or the Hessian is not positive definite. With many
    checkpoints per run the posterior standard deviations are ~1e-3 or less; numpyro's
    warm-up shrinks its mass-matrix estimate towards 1e-3 I, which on those scales costs
    hundreds of leapfrog steps per draw. Sampled in whitened coordinates, the posterior is near
    standard normal and its scale no longer depends on the number of checkpoints.

    The value-and-gradient and Hessian programs go through the on-disk program cache
    (:func:`bayescale.inference.programs._program`): the curves and priors are constants of the PyMC
    model, so they are part of the key (:func:`_structure`), and the model is built and converted
    to JAX only when a program is not cached. The search starts at the priors' centres.
    """
    import jax

    setup_jax()
    if priors is None:
        priors = resolve_priors(correlation)

    @functools.cache
    def neg_logp() -> Any:
        from pymc.sampling.jax import get_jaxified_logp

        # (PyMC's flag reads backwards: negative_logp=False returns -logp)
        model_neg_logp = get_jaxified_logp(build_model(data, correlation, priors=priors), negative_logp=False)
        return lambda x: model_neg_logp([x])

    n_runs = data.grid_y.shape[0]
    log_g, log_beta = (np.log(priors[name].centre()) for name in ("G_at_ref", "beta"))
    # sigma starts at 0.01, a typical scatter of log loss about a smooth curve (any prior's
    # support is (0, inf)); rho at the logit of its prior's centre
    start = np.r_[_log_e_prior_mean(data), np.full(n_runs, log_g), np.full(n_runs, log_beta), np.log(0.01)]
    if correlation == "ar1":
        centre = priors["rho"].centre()
        start = np.r_[start, np.log(centre / (1.0 - centre))]
    structure = _structure(data, correlation, priors)
    value_and_grad = _cached_program(
        structure, "value_and_grad", lambda: jax.value_and_grad(neg_logp()), (start,)
    )
    hessian = _cached_program(structure, "hessian", lambda: jax.hessian(neg_logp()), (start,))
    # BFGS first (fast: 4 s at 1e5 points); should it end off the finite region, Newton steps in
    # a trust region on the exact Hessian (slower, but a step into overflow is just rejected).
    return mode_and_root(value_and_grad, hessian, start, methods=("BFGS", "trust-ncg"))


def _structure(data: CurveData, correlation: Correlation, priors: Mapping[str, Prior]) -> tuple[Any, ...]:
    """What the Laplace programs of :func:`build_model` bake in: curves, correlation, priors, PyMC."""
    from importlib.metadata import version

    digest = hashlib.sha256()
    for array in (data.grid_u, data.grid_y, data.grid_mask):
        digest.update(repr((array.shape, str(array.dtype))).encode())
        digest.update(np.ascontiguousarray(array).tobytes())
    return (
        "envelope",
        correlation,
        priors_to_json(priors),
        digest.hexdigest(),
        version("pymc"),
        version("pytensor"),
    )


@dataclass(repr=False)
class EnvelopeFit(MethodResult, AllocationAnswers):
    """Posterior of the smoothed curves and the envelope exponents derived from it.

    Attributes
    ----------
    idata
        ``xarray.DataTree`` (:mod:`~bayescale.inference.container`); posterior ``log_E``, ``log_G_at_ref``,
        ``beta`` per curve, ``sigma`` and (AR(1)) ``rho``.
    data
        The curves as arrays.
    priors
        The prior of every parameter of :func:`default_priors` the fit used.
    grid
        Compute values of the envelope, with how many runs cover each.
    """

    title: ClassVar[str] = "Training-curve envelope (Approach 1)"

    idata: Any
    data: CurveData
    correlation: Correlation
    priors: dict[str, Prior]
    sampler: SamplerConfig
    random_seed: int | None
    diagnostics: Diagnostics
    grid: pd.DataFrame

    @property
    def posterior(self) -> xr.Dataset:
        """Posterior draws (dims ``chain``, ``draw``, ``curve``)."""
        return container.posterior(self.idata)

    def envelope_draws(self) -> xr.Dataset:
        """Per draw and grid compute: ``params_opt`` of the envelope and whether it is ``interior``."""
        post = self.posterior
        compute = self.grid["compute"].to_numpy()
        n = self.data.params
        log_d = np.log(compute[:, None] / (self.data.kappa * n[None, :]))  # (grid, curve)
        lo, hi = self._token_range()
        covered = (log_d >= lo[None, :]) & (log_d <= hi[None, :])
        u = xr.DataArray(log_d - self.data.log_tokens_ref[None, :], dims=("grid", "curve"))
        # (numpy's ufunc on DataArrays returns a DataArray; its stubs say ndarray)
        log_loss = cast(xr.DataArray, np.logaddexp(post["log_E"], post["log_G_at_ref"] - post["beta"] * u))
        log_loss = log_loss.where(xr.DataArray(covered, dims=("grid", "curve")), np.inf)
        best = log_loss.argmin("curve")
        order = np.argsort(n)
        n_sorted = n[order]
        cov_sorted = covered[:, order]
        smallest = np.array([n_sorted[c].min() for c in cov_sorted])
        largest = np.array([n_sorted[c].max() for c in cov_sorted])
        params_opt = xr.DataArray(n[best.values], dims=best.dims, coords=best.coords)
        interior = (params_opt > xr.DataArray(smallest, dims="grid")) & (
            params_opt < xr.DataArray(largest, dims="grid")
        )
        return xr.Dataset({"params_opt": params_opt, "interior": interior})

    def _token_range(self) -> tuple[np.ndarray, np.ndarray]:
        frame = pd.DataFrame({"run": self.data.run, "t": self.data.log_tokens})
        grouped = frame.groupby("run")["t"]
        return grouped.min().to_numpy(), grouped.max().to_numpy()

    def exponent_draws(self) -> xr.Dataset:
        """Draws of ``a``, ``b = 1 - a`` and ``log_k`` (log N_opt = log_k + a log C)."""
        env = self.envelope_draws()
        x = xr.DataArray(np.log(self.grid["compute"].to_numpy()), dims="grid")
        y = np.log(env["params_opt"])
        w = env["interior"].astype(float)
        sw = w.sum("grid")
        if float(sw.min()) < 2:
            raise RunsError(
                "the envelope has fewer than 2 compute values where the best run is neither the "
                "smallest nor the largest available; curves of more model sizes are needed"
            )
        xbar = (w * x).sum("grid") / sw
        ybar = (w * y).sum("grid") / sw
        a = (w * (x - xbar) * (y - ybar)).sum("grid") / (w * (x - xbar) ** 2).sum("grid")
        return xr.Dataset({"a": a, "b": 1.0 - a, "log_k": ybar - a * xbar}).transpose("chain", "draw")

    def optimal_draws(self, compute: Any) -> xr.Dataset:
        """Draws of ``params``, ``tokens`` and ``tokens_per_param`` at each budget (dim ``query``)."""
        query = make_query(compute=compute)
        exps = self.exponent_draws()
        params = np.exp(exps["log_k"] + exps["a"] * np.log(query["compute"]))
        tokens = query["compute"] / (self.data.kappa * params)
        out = xr.Dataset({"params": params, "tokens": tokens, "tokens_per_param": tokens / params})
        return out.transpose("chain", "draw", "query")

    def to_dict(self, prob: float = 0.9, kind: str = "eti") -> dict[str, Any]:
        """JSON-ready: exponents, correlation, grid and diagnostics."""
        out: dict[str, Any] = {
            "n_points": len(self.data.run),
            "n_runs": len(self.data.params),
            "prob": prob,
            "priors": {name: prior.to_dict() for name, prior in sorted(self.priors.items())},
            "correlation": self.correlation,
            **self.exponents(prob, kind),
            "sigma": interval_dict(self.posterior["sigma"], prob, kind),
            "kappa": self.data.kappa,
            "compute_grid": [float(self.grid["compute"].min()), float(self.grid["compute"].max())],
        }
        if "rho" in self.posterior:
            out["rho"] = interval_dict(self.posterior["rho"], prob, kind)
        out["diagnostics"] = {
            k: self.diagnostics[k] for k in ("divergences", "max_r_hat", "min_ess_bulk", "ok", "problems")
        }
        return out

    def saved_parts(self) -> tuple[Any, dict[str, Any]]:
        """The draws with the curves (dim ``checkpoint``) and the compute grid; the settings.

        The curves' arrays (:class:`CurveData`) are rebuilt from the curves on loading.
        """
        const = table_to_dataset(self.data.curves.frame, self.data.curves.source, "checkpoint")
        const = const.assign(frame_to_variables(self.grid, "_grid_", "grid"))
        observed = xr.Dataset({"log_loss": (("checkpoint",), self.data.log_loss)})
        settings = {
            "correlation": self.correlation,
            "priors": priors_to_json(self.priors),
            "grid_columns": [str(c) for c in self.grid.columns],
        }
        return with_data(self.idata, const, observed), settings

    @classmethod
    def from_saved(cls, idata: Any, settings: dict[str, Any], common: dict[str, Any]) -> EnvelopeFit:
        """Rebuild a fit from :meth:`saved_parts`; TypeError for a setting of the wrong type."""
        correlation = settings["correlation"]
        check_setting("correlation", correlation, correlation in CORRELATIONS)
        const = container.group(idata, "constant_data")
        frame, source = table_from_dataset(const)
        grid = frame_from_variables(const, "_grid_", settings["grid_columns"])
        return cls(
            idata=idata,
            data=prepare(Curves(frame=frame, source=source)),
            correlation=correlation,
            priors=resolve_priors(correlation, priors_setting(settings)),
            **common,
            grid=grid,
        )

    def _facts(self) -> dict[str, Any]:
        return {
            "data": self.data.curves.source,
            "curves": len(self.data.params),
            "checkpoints": len(self.data.run),
            "residuals": self.correlation,
        }

    def _intervals(self) -> dict[str, dict[str, float]]:
        post = self.posterior
        return {
            **self.exponents(),
            **{name: interval_dict(post[name]) for name in ("sigma", "rho") if name in post},
        }


def compute_grid(data: CurveData, size: int = 60) -> pd.DataFrame:
    """Log-spaced compute values covered by at least :data:`MIN_RUNS_AT_COMPUTE` runs.

    ``size`` points span the covered range; those in gaps of coverage are left out.
    """
    frame = pd.DataFrame({"run": data.run, "t": data.log_tokens})
    lo = frame.groupby("run")["t"].min().to_numpy()
    hi = frame.groupby("run")["t"].max().to_numpy()
    log_c_lo = np.log(data.kappa * data.params) + lo
    log_c_hi = np.log(data.kappa * data.params) + hi
    candidates = np.linspace(log_c_lo.min(), log_c_hi.max(), 4 * size)
    n_cover = ((candidates[:, None] >= log_c_lo) & (candidates[:, None] <= log_c_hi)).sum(axis=1)
    ok = candidates[n_cover >= MIN_RUNS_AT_COMPUTE]
    if ok.size == 0:
        raise RunsError(
            f"no compute is covered by {MIN_RUNS_AT_COMPUTE} or more runs; the envelope needs "
            "curves that overlap in compute"
        )
    grid = np.linspace(ok.min(), ok.max(), size)
    cover = ((grid[:, None] >= log_c_lo) & (grid[:, None] <= log_c_hi)).sum(axis=1)
    # Runs of few sizes leave gaps in compute between ok.min() and ok.max(): keep covered points only.
    keep = cover >= MIN_RUNS_AT_COMPUTE
    return pd.DataFrame({"compute": np.exp(grid[keep]), "n_runs": cover[keep]})


def fit_envelope(
    curves: Any,
    *,
    correlation: Correlation = "ar1",
    priors: Mapping[str, Prior | Mapping[str, Any]] | None = None,
    grid_size: int = 60,
    sampler: SamplerSettings | None = None,
    random_seed: int | None = None,
    progressbar: bool = True,
    warn: bool = True,
    whiten: bool = True,
) -> EnvelopeFit:
    """Fit smoothed loss curves and derive the compute-optimal envelope (Approach 1).

    Parameters
    ----------
    curves
        :class:`~bayescale.data.curves.Curves`, a DataFrame, a CSV/Parquet path or a
        bundled curve data set (columns ``run``, ``params``, ``tokens``, ``loss``).
    correlation
        ``"ar1"`` (default): residuals of one run follow an AR(1) series;
        ``"none"``: independent checkpoints (overconfident; for comparison).
    priors
        Priors replacing the defaults (:func:`default_priors`), by parameter name, on the
        support each is sampled on (:func:`resolve_priors`). Each run's ``E`` takes none: its
        prior is centred on the run's lowest loss.
    grid_size
        Number of compute values of the envelope.
    sampler, random_seed, progressbar
        Sampler settings, seed and progress bar (see :func:`bayescale.fit`); the sampler's
        defaults are :data:`SAMPLER_DEFAULTS`.
    warn
        Emit a :class:`~bayescale.inference.diagnostics.FitWarning` when diagnostics fail.
    whiten
        Sample in coordinates whitened by the Laplace approximation (:func:`laplace`;
        default). ``False`` samples the unconstrained parameters as they are (slow to
        adapt when there are thousands of checkpoints per run).

    Returns
    -------
    EnvelopeFit
    """
    curves_obj = Curves.from_any(curves)
    merged = resolve_priors(correlation, priors)  # (checks the correlation)
    if curves_obj.frame["params"].nunique() < 3:
        raise RunsError("the envelope needs curves of at least 3 model sizes")
    data = prepare(curves_obj)
    grid = compute_grid(data, grid_size)
    names = ["log_E", "log_G_at_ref", "beta", "sigma", "rho"]
    config = resolve_sampler(SAMPLER_DEFAULTS, sampler)
    whitening = laplace(data, correlation, merged) if whiten else None
    if whitening is not None and choose_backend(config.backend) == "numpyro":
        # Whitened, the posterior is near N(0, I): a diagonal metric is enough, and a dense one
        # is worse: estimated in warm-up's first windows from tens of draws of 60+ coordinates,
        # it is near singular and warm-up ran at the 1023-step tree-depth limit (measured: 1e4
        # points, 20 runs: warm-up 45 s dense against 5 s diagonal, 36 against 15 steps after).
        nuts = {**config.extra.get("nuts_kwargs", {}), "dense_mass": False}
        config = replace(config, extra={**config.extra, "nuts_kwargs": nuts})
    shift, root = whitening or (None, None)
    model = build_model(data, correlation, shift, root, merged)
    random_seed = resolve_seed(random_seed)
    idata, report, used = sample_checked(model, names, config, random_seed, progressbar, warn)
    return EnvelopeFit(
        idata=idata,
        data=data,
        correlation=correlation,
        priors=merged,
        sampler=used,
        random_seed=random_seed,
        diagnostics=report,
        grid=grid,
    )
