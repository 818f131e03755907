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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from bayescale.curves import Curves
from bayescale.errors import BayescaleError, RunsError
from bayescale.intervals import check_interval, interval_dict, interval_table
from bayescale.sampling import SamplerConfig

CORRELATIONS = ("ar1", "none")

#: Least number of runs covering a compute for it to enter the envelope grid.
MIN_RUNS_AT_COMPUTE = 3


@dataclass(frozen=True)
class CurveData:
    """Curves prepared for the model: run index, log tokens, log loss, AR(1) predecessor."""

    curves: Curves
    run: np.ndarray
    log_tokens: np.ndarray
    log_loss: np.ndarray
    prev: np.ndarray
    first: np.ndarray
    log_tokens_ref: np.ndarray
    params: np.ndarray
    kappa: float


def prepare(curves: Curves) -> CurveData:
    """Arrays of ``curves`` in table order (sorted by run, then tokens)."""
    run = curves.run_index()
    first = np.r_[True, run[1:] != run[:-1]]
    prev = np.where(first, 0, np.arange(len(run)) - 1)
    log_tokens = np.log(curves.column("tokens"))
    ratio = curves.column("compute") / (curves.column("params") * curves.column("tokens"))
    return CurveData(
        curves=curves,
        run=run,
        log_tokens=log_tokens,
        log_loss=np.log(curves.column("loss")),
        prev=prev,
        first=first,
        # each run's mean log tokens: there its G_r is least correlated with beta_r
        log_tokens_ref=pd.Series(log_tokens).groupby(run).mean().to_numpy(),
        params=curves.runs_table()["params"].to_numpy(dtype=float),
        kappa=float(np.exp(np.mean(np.log(ratio)))),
    )


def build_model(data: CurveData, correlation: str = "ar1") -> Any:
    """The PyMC model of every run's smoothed curve, with AR(1) or independent residuals."""
    import pymc as pm
    import pytensor.tensor as pt

    if correlation not in CORRELATIONS:
        raise BayescaleError(f"unknown correlation {correlation!r}; use one of {list(CORRELATIONS)}")
    n_runs = int(data.run.max()) + 1
    y_min = np.array([data.log_loss[data.run == r].min() for r in range(n_runs)])
    coords = {"curve": data.curves.run_names, "point": np.arange(len(data.run))}
    with pm.Model(coords=coords) as model:
        # log E_r: below the lowest loss the run reached (E < L), weakly: 90% within a factor 2.4.
        log_e = pm.Normal("log_E", mu=y_min - 0.2, sigma=0.5, dims="curve")
        log_g = pm.Normal("log_G_at_ref", mu=-1.0, sigma=2.0, dims="curve")
        beta = pm.LogNormal("beta", mu=-1.0, sigma=0.6, dims="curve")
        u = data.log_tokens - data.log_tokens_ref[data.run]
        mu = pt.logaddexp(log_e[data.run], log_g[data.run] - beta[data.run] * u)
        sigma = pm.HalfNormal("sigma", sigma=0.05)
        resid = data.log_loss - mu
        if correlation == "ar1":
            rho = pm.Beta("rho", alpha=2.0, beta=2.0)
            innov = pt.where(data.first, resid, resid - rho * resid[data.prev])
            scale = pt.where(data.first, sigma / pt.sqrt(1.0 - rho**2), sigma)
        else:
            innov, scale = resid, sigma
        # The map from residuals to innovations is triangular with unit diagonal: no Jacobian term.
        pm.Potential("log_loss", pm.logp(pm.Normal.dist(0.0, scale), innov).sum())
    return model


@dataclass
class EnvelopeFit:
    """Posterior of the smoothed curves and the envelope exponents derived from it.

    Attributes
    ----------
    idata
        ``arviz.InferenceData``; posterior ``log_E``, ``log_G_at_ref``,
        ``beta`` per curve, ``sigma`` and (AR(1)) ``rho``.
    data
        The curves as arrays.
    grid
        Compute values of the envelope, with how many runs cover each.
    """

    idata: Any
    data: CurveData
    correlation: str
    sampler: SamplerConfig
    random_seed: int | None
    diagnostics: dict[str, Any]
    grid: pd.DataFrame

    @property
    def posterior(self) -> xr.Dataset:
        """Posterior draws (dims ``chain``, ``draw``, ``curve``)."""
        return self.idata.posterior

    def envelope_draws(self) -> xr.Dataset:
        """Per draw and grid compute: ``params_opt`` of the envelope and whether it is ``interior``."""
        post = self.posterior
        compute = self.grid["compute"].to_numpy()
        n = self.data.params
        log_d = np.log(compute[:, None] / (self.data.kappa * n[None, :]))  # (grid, curve)
        lo, hi = self._token_range()
        covered = (log_d >= lo[None, :]) & (log_d <= hi[None, :])
        u = xr.DataArray(log_d - self.data.log_tokens_ref[None, :], dims=("grid", "curve"))
        log_loss = np.logaddexp(post["log_E"], post["log_G_at_ref"] - post["beta"] * u)
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

    def exponents(self, prob: float = 0.9, kind: str = "eti") -> dict[str, dict[str, float]]:
        """``{"a": {"median", "lower", "upper"}, "b": {...}}``."""
        draws = self.exponent_draws()
        return {name: interval_dict(draws[name], prob, kind) for name in ("a", "b")}

    def optimal_draws(self, compute: Any) -> xr.Dataset:
        """Draws of ``params``, ``tokens`` and ``tokens_per_param`` at each budget (dim ``query``)."""
        from bayescale.plan import _query

        query = _query(compute=compute)
        exps = self.exponent_draws()
        params = np.exp(exps["log_k"] + exps["a"] * np.log(query["compute"]))
        tokens = query["compute"] / (self.data.kappa * params)
        out = xr.Dataset({"params": params, "tokens": tokens, "tokens_per_param": tokens / params})
        return out.transpose("chain", "draw", "query")

    def optimal(self, compute: Any, prob: float = 0.9, kind: str = "eti") -> pd.DataFrame:
        """Compute-optimal ``params``, ``tokens``, ``tokens_per_param`` at budget(s), one row each."""
        from bayescale.plan import _query

        check_interval(prob, kind)
        return interval_table(self.optimal_draws(compute), prob, kind, _query(compute=compute))

    def summary(self, prob: float = 0.9, kind: str = "eti") -> dict[str, Any]:
        """JSON-ready summary: exponents, correlation, grid and diagnostics."""
        out: dict[str, Any] = {
            "n_points": len(self.data.run),
            "n_runs": len(self.data.params),
            "prob": prob,
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
    correlation: str = "ar1",
    grid_size: int = 60,
    draws: int = 1000,
    tune: int = 1000,
    chains: int = 4,
    backend: str = "auto",
    target_accept: float = 0.9,
    random_seed: int | None = None,
    progressbar: bool = True,
    warn: bool = True,
) -> EnvelopeFit:
    """Fit smoothed loss curves and derive the compute-optimal envelope (Approach 1).

    Parameters
    ----------
    curves
        :class:`~bayescale.curves.Curves`, a DataFrame, a CSV/Parquet path or a
        bundled curve data set (columns ``run``, ``params``, ``tokens``, ``loss``).
    correlation
        ``"ar1"`` (default): residuals of one run follow an AR(1) series;
        ``"none"``: independent checkpoints (overconfident; for comparison).
    grid_size
        Number of compute values of the envelope.
    draws, tune, chains, backend, target_accept, random_seed, progressbar
        Sampler settings (see :func:`bayescale.fit`).
    warn
        Emit a :class:`~bayescale.diagnostics.FitWarning` when diagnostics fail.

    Returns
    -------
    EnvelopeFit
    """
    from bayescale.sampling import sample_checked

    curves_obj = Curves.from_any(curves)
    if correlation not in CORRELATIONS:
        raise BayescaleError(f"unknown correlation {correlation!r}; use one of {list(CORRELATIONS)}")
    if curves_obj.frame["params"].nunique() < 3:
        raise RunsError("the envelope needs curves of at least 3 model sizes")
    data = prepare(curves_obj)
    grid = compute_grid(data, grid_size)
    config = SamplerConfig(
        draws=draws, tune=tune, chains=chains, backend=backend, target_accept=target_accept
    )
    names = ["log_E", "log_G_at_ref", "beta", "sigma", "rho"]
    idata, report, used = sample_checked(
        build_model(data, correlation), names, config, random_seed, progressbar, warn
    )
    return EnvelopeFit(
        idata=idata,
        data=data,
        correlation=correlation,
        sampler=used,
        random_seed=random_seed,
        diagnostics=report,
        grid=grid,
    )
