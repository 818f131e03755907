"""Figures of the parameters and of the fit to the runs: pair plot, prior vs posterior, checks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from bayescale.data.runs import Runs
from bayescale.errors import BayescaleError
from bayescale.plots import references as refs
from bayescale.plots._common import BAND_PROBS, LABELS, axes, figure, is_chinchilla_data, plain_log_ticks
from bayescale.posterior.intervals import interval
from bayescale.questions.plan import predict_draws

if TYPE_CHECKING:
    import xarray as xr

    from bayescale.methods.parametric import Fit

_MARKERS = ("s", "o", "^", "v")

#: Parameters of the default pair plot, those of them the law has and leaves free.
PAIR_PARAMETERS = ("E", "alpha_N", "alpha_D")


def _draws(fit: Fit, name: str) -> np.ndarray:
    if name not in fit.posterior:
        raise BayescaleError(f"fit has no parameter {name!r}; it has {fit.parameter_names}")
    return np.asarray(fit.posterior[name]).ravel()


def plot_pair(
    fit: Fit,
    params: Sequence[str] | None = None,
    references: bool | None = None,
    max_points: int = 2000,
) -> Any:
    """Corner plot of posterior draws of ``params``, with published estimates marked.

    Parameters
    ----------
    fit
        A fitted law.
    params
        Parameters to show (at least one); default those of E, alpha_N and alpha_D that the
        law has and the fit left free (:data:`PAIR_PARAMETERS`), else every free parameter.
    references
        Mark Hoffmann et al. (2022) and Epoch AI (2024) estimates; default when the
        runs are the bundled ``chinchilla`` data set.
    max_points
        Draws shown in each scatter panel (thinned evenly).

    Returns
    -------
    matplotlib.figure.Figure
    """
    if params is None:
        names = [p for p in PAIR_PARAMETERS if p in fit.free_parameters] or list(fit.free_parameters)
    else:
        names = list(params)
    if not names:
        raise BayescaleError("plot_pair needs at least one parameter")
    values = {n: _draws(fit, n) for n in names}
    marks = refs.ESTIMATES if is_chinchilla_data(fit, references) else {}
    k = len(names)
    fig, grid = figure(k, k, (2.6 * k + 1.0, 2.4 * k + 0.6))
    keep = np.linspace(0, len(values[names[0]]) - 1, min(max_points, len(values[names[0]]))).astype(int)
    for row in range(k):
        for col in range(k):
            ax = grid[row, col]
            x, y = names[col], names[row]
            if col > row:
                ax.set_axis_off()
                continue
            if row == col:
                ax.hist(values[x], bins=40, color="C0", alpha=0.7, density=True)
                ax.set_yticks([])
                for est, marker in zip(marks.values(), _MARKERS, strict=False):
                    if x in est:
                        ax.axvline(est[x], color="k", ls="--" if marker == "s" else ":", lw=1)
            else:
                ax.scatter(values[x][keep], values[y][keep], s=3, alpha=0.3, color="C0", rasterized=True)
                for (label, est), marker in zip(marks.items(), _MARKERS, strict=False):
                    if x in est and y in est:
                        ax.scatter(est[x], est[y], marker=marker, s=50, color="k", fc="none", lw=1.2,
                                   label=label, zorder=4)  # fmt: skip
            if row == k - 1:
                ax.set_xlabel(x)
            if col == 0 and row > 0:
                ax.set_ylabel(y)
    if marks and k > 1:
        grid[1, 0].legend(fontsize="small", loc="best")
    fig.suptitle(f"Posterior draws, {fit.law.name} law" + (" (dashed/dotted: published)" if marks else ""))
    return fig


def plot_prior_posterior(
    fit: Fit,
    params: Sequence[str] | None = None,
    draws: int = 4000,
    random_seed: int = 0,
) -> Any:
    """Prior against posterior density of each free parameter, one panel each.

    Positive parameters are shown on a log10 scale (their priors span decades).
    Densities are kernel estimates scaled to peak 1, so a narrow posterior and a
    wide prior are both visible.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from scipy.stats import gaussian_kde

    names = list(params) if params is not None else fit.free_parameters
    unknown = [n for n in names if n not in fit.priors]
    if unknown:
        raise BayescaleError(
            f"no prior for {unknown}: fixed or unknown; free parameters are {list(fit.priors)}"
        )
    rng = np.random.default_rng(random_seed)
    ncols = min(3, len(names))
    nrows = int(np.ceil(len(names) / ncols))
    fig, grid = figure(nrows, ncols, (3.3 * ncols, 2.6 * nrows))
    for ax in grid.ravel()[len(names) :]:
        ax.set_axis_off()
    for ax, name in zip(grid.ravel(), names, strict=False):
        prior = fit.priors[name]
        prior_draws = prior.sample(rng, draws).ravel()
        post = _draws(fit, name)
        label = name
        if prior.is_positive:
            prior_draws, post, label = np.log10(prior_draws), np.log10(post), f"log10 {name}"
        lo = min(np.quantile(prior_draws, 0.005), post.min())
        hi = max(np.quantile(prior_draws, 0.995), post.max())
        x = np.linspace(lo, hi, 400)
        for sample, colour, text in ((prior_draws, "0.5", "prior"), (post, "C0", "posterior")):
            density = gaussian_kde(sample)(x)
            density = density / density.max()
            ax.fill_between(x, density, color=colour, alpha=0.3, lw=0)
            ax.plot(x, density, color=colour, label=text)
        unit = " [nats/token]" if name == "E" else ""
        ax.set_xlabel(label + unit)
        ax.set_ylim(0, 1.08)
        ax.set_yticks([])
    grid[0, 0].set_ylabel("density (scaled to peak 1)")
    grid[0, 0].legend(fontsize="small")
    fig.suptitle(f"Prior (grey) and posterior (blue), {fit.law.name} law on {len(fit.runs)} runs")
    return fig


def _run_predictions(fit: Fit, random_seed: int) -> Any:
    frame = fit.runs.frame
    unique = frame["unique_tokens"] if "unique_tokens" in fit.law.required_columns else None
    return predict_draws(fit, frame["params"], frame["tokens"], unique, random_seed=random_seed)


def plot_residuals(
    fit: Fit, x: str = "compute", prob: float = 0.9, random_seed: int = 0, ax: Any = None
) -> Any:
    """Relative residual of each run against the posterior median law, with predictive intervals.

    The residual is observed / median mean loss - 1, in percent; each run's bar is
    the ``prob`` posterior predictive interval on the same scale (law uncertainty
    plus run-to-run noise). The title reports how many runs fall inside their bar.
    """
    frame = fit.runs.frame
    if x not in ("compute", "params", "tokens"):
        raise BayescaleError(f"x must be 'compute', 'params' or 'tokens', got {x!r}")
    ax = axes(ax)
    draws = _run_predictions(fit, random_seed)
    centre = np.asarray(interval(draws["loss"], 0.5)["median"])
    pred = interval(draws["loss_predictive"], prob)
    observed = frame["loss"].to_numpy()
    resid = 100 * (observed / centre - 1)
    lower = 100 * (np.asarray(pred["lower"]) / centre - 1)
    upper = 100 * (np.asarray(pred["upper"]) / centre - 1)
    inside = (resid >= lower) & (resid <= upper)
    ax.vlines(frame[x], lower, upper, color="0.7", lw=1, label=f"{prob:.0%} predictive interval")
    ax.scatter(frame[x][inside], resid[inside], s=12, color="C0", zorder=3, label="run inside")
    ax.scatter(frame[x][~inside], resid[~inside], s=18, color="C3", marker="x", zorder=3, label="run outside")
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlabel(LABELS[x])
    ax.set_ylabel("residual: observed / median law - 1 [%]")
    ax.set_title(f"Residuals: {inside.sum()} of {len(inside)} runs ({inside.mean():.0%}) inside")
    ax.legend(fontsize="small")
    return ax


def plot_ppc(fit: Fit, prob: float = 0.9, random_seed: int = 0, ax: Any = None) -> Any:
    """Posterior predictive check: predicted against observed loss of every run, with intervals."""
    ax = axes(ax)
    draws = _run_predictions(fit, random_seed)
    pred = interval(draws["loss_predictive"], prob)
    observed = fit.runs.frame["loss"].to_numpy()
    median, lower, upper = (np.asarray(pred[k]) for k in ("median", "lower", "upper"))
    inside = (observed >= lower) & (observed <= upper)
    ax.vlines(observed, lower, upper, color="0.6", lw=1, label=f"{prob:.0%} predictive interval")
    ax.scatter(
        observed[inside], median[inside], s=12, color="C0", zorder=3, label="predictive median, inside"
    )
    ax.scatter(observed[~inside], median[~inside], s=18, color="C3", marker="x", zorder=3, label="outside")
    span = [min(observed.min(), lower.min()), max(observed.max(), np.minimum(upper, 10 * observed).max())]
    ax.plot(span, span, color="k", lw=0.8, ls="--", label="predicted = observed")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlim(span[0] * 0.95, span[1] * 1.03)
    ax.set_ylim(span[0] * 0.95, span[1] * 1.03)
    plain_log_ticks(ax)
    ax.set_xlabel("observed " + LABELS["loss"])
    ax.set_ylabel("predicted " + LABELS["loss"])
    ax.set_title(
        f"Posterior predictive check: {inside.sum()} of {len(inside)} runs ({inside.mean():.0%}) inside"
    )
    ax.legend(fontsize="small", loc="upper left")
    return ax


def plot_prior_predictive(
    draws: xr.Dataset, runs: Any, x: str = "compute", probs: Sequence[float] = BAND_PROBS, ax: Any = None
) -> Any:
    """What the priors predict for each run (nested intervals) against the observed losses.

    Parameters
    ----------
    draws
        Output of :func:`bayescale.checks.prior_predictive` (``loss_predictive``, dims chain, draw, run).
    runs
        The same runs (anything :meth:`bayescale.Runs.from_any` accepts).
    x
        Column on the x axis: ``"compute"``, ``"params"`` or ``"tokens"``.
    """
    frame = Runs.from_any(runs).frame
    if "loss_predictive" not in draws or draws["loss_predictive"].sizes.get("run") != len(frame):
        raise BayescaleError(
            "draws must be bayescale.checks.prior_predictive output for these runs (dim 'run')"
        )
    if x not in ("compute", "params", "tokens"):
        raise BayescaleError(f"x must be 'compute', 'params' or 'tokens', got {x!r}")
    ax = axes(ax)
    values = np.asarray(draws["loss_predictive"].transpose("chain", "draw", "run")).reshape(-1, len(frame))
    observed = frame["loss"].to_numpy()
    cap = 100 * observed.max()  # overflowing draws would stretch the axis to infinity
    for i, prob in enumerate(sorted(probs, reverse=True)):
        tail = (1 - prob) / 2
        # "nearest" keeps quantiles finite-or-inf without interpolating between inf draws.
        lo, hi = np.quantile(values, [tail, 1 - tail], axis=0, method="nearest")
        ax.vlines(frame[x], np.minimum(lo, cap), np.minimum(hi, cap), color="C1", alpha=0.3 + 0.4 * i,
                  lw=1 + 2 * i, label=f"prior predictive {prob:.0%} (capped at 100x max loss)")  # fmt: skip
    ax.scatter(frame[x], observed, s=10, color="k", zorder=3, label="observed runs")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(LABELS[x])
    ax.set_ylabel(LABELS["loss"])
    ax.set_title("Prior predictive check: do the priors allow the observed losses?", fontsize="medium")
    ax.legend(fontsize="small")
    return ax
