"""Figures of the law's curves: loss against C, N or D, IsoFLOP profiles, the frontier, repeated data.

Each takes an optional ``ax`` and returns it. Bands are quantiles of the
posterior draws over ``chain`` and ``draw``, never a point estimate.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from bayescale.data.schema import FLOPS_PER_PARAM_TOKEN
from bayescale.errors import BayescaleError
from bayescale.plots import references as refs
from bayescale.plots._common import (
    BAND_PROBS,
    LABELS,
    SYMBOL,
    axes,
    band,
    check_range,
    decades,
    fmt,
    is_chinchilla_data,
    log_colours,
    needs_allocation,
    needs_unique_tokens,
    plain_log_ticks,
)
from bayescale.posterior.intervals import interval, interval_dict
from bayescale.questions.plan import optimal_draws, predict_draws

if TYPE_CHECKING:
    from bayescale.methods.parametric import Fit

#: For each x of :func:`plot_loss`, the variable held fixed along each curve (and colouring the runs).
_CURVE_VARIABLE = {"compute": "params", "tokens": "params", "params": "tokens"}


def plot_frontier(
    fit: Fit,
    compute_range: tuple[float, float] | None = None,
    prob: float = 0.9,
    ax: Any = None,
) -> Any:
    """Loss against compute: the runs, and the compute-optimal loss with its band.

    Parameters
    ----------
    fit
        A fitted law with a compute-optimal allocation.
    compute_range
        Budgets to draw (FLOPs); default from the smallest run to 100x the largest.
    prob
        Probability of the credible band.
    ax
        Matplotlib axes to draw on; a new figure when ``None``.
    """
    ax = axes(ax)
    runs = fit.runs.frame
    lo, hi = check_range(compute_range, "compute_range") or (
        runs["compute"].min(),
        runs["compute"].max() * 100,
    )
    grid = np.geomspace(lo, hi, 60)
    loss = interval(optimal_draws(fit, grid)["loss"], prob)
    points = ax.scatter(
        runs["compute"], runs["loss"], c=np.log10(runs["params"]), s=14, cmap="viridis", zorder=3
    )
    ax.figure.colorbar(points, ax=ax, label="log10 parameters N")
    ax.fill_between(
        grid, loss["lower"], loss["upper"], color="C3", alpha=0.25, label=f"{prob:.0%} credible band"
    )
    ax.plot(grid, loss["median"], color="C3", label="compute-optimal loss (posterior median)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(LABELS["compute"])
    ax.set_ylabel(LABELS["loss"])
    plain_log_ticks(ax)
    ax.set_title(f"{fit.law.name} law on {len(runs)} runs")
    ax.legend(loc="upper right", fontsize="small")
    return ax


def _loss_draws(fit: Fit, params: Any, tokens: Any) -> Any:
    """Draws of the law's mean loss; a law of repeated data gets fresh data (U = D)."""
    unique = tokens if "unique_tokens" in fit.law.required_columns else None
    return predict_draws(fit, params, tokens, unique, random_seed=0)["loss"]


def plot_loss(
    fit: Fit,
    x: str = "compute",
    curves: Sequence[float] | None = None,
    probs: Sequence[float] = BAND_PROBS,
    ax: Any = None,
    x_range: tuple[float, float] | None = None,
) -> Any:
    """Loss against compute, parameters or tokens: the runs and the law's curves with bands.

    Along each curve the other variable is held fixed: the model size N for
    ``x="compute"`` (D = C / 6N) and ``x="tokens"``, the token count D for
    ``x="params"``. Runs are coloured by that variable on the same scale as the
    curves. A law of repeated data is drawn for fresh data (U = D).

    Parameters
    ----------
    fit
        A fitted law.
    x
        ``"compute"``, ``"params"`` or ``"tokens"``.
    curves
        Values of the fixed variable, one curve each; default four spanning the runs.
    probs
        Probabilities of the nested credible bands.
    ax
        Matplotlib axes; a new figure when ``None``.
    x_range
        Range of ``x`` to draw the curves over; default half the smallest run's to twice the
        largest's.
    """
    if x not in _CURVE_VARIABLE:
        raise BayescaleError(f"x must be one of {sorted(_CURVE_VARIABLE)}, got {x!r}")
    fixed = _CURVE_VARIABLE[x]
    ax = axes(ax)
    runs = fit.runs.frame
    default = np.geomspace(runs[fixed].min(), runs[fixed].max(), 4)
    values = np.atleast_1d(np.asarray(default if curves is None else curves, dtype=float))
    cmap, norm = log_colours(np.concatenate([runs[fixed].to_numpy(), values]))
    lo, hi = check_range(x_range, "x_range") or (runs[x].min() / 2, runs[x].max() * 2)
    grid = np.geomspace(lo, hi, 60)
    for i, value in enumerate(values):
        n: Any
        d: Any
        if x == "compute":
            n, d = value, grid / (FLOPS_PER_PARAM_TOKEN * value)
        elif x == "tokens":
            n, d = value, grid
        else:
            n, d = grid, value
        draws = _loss_draws(fit, np.broadcast_to(n, grid.shape), np.broadcast_to(d, grid.shape))
        colour = cmap(norm(np.log10(value)))
        band(ax, grid, draws, colour, probs, label=f"{SYMBOL[fixed]} = {fmt(value)}", band_label=i == 0)
    points = ax.scatter(
        runs[x], runs["loss"], c=np.log10(runs[fixed]), cmap=cmap, norm=norm, s=12, zorder=3, ec="none"
    )
    ax.figure.colorbar(points, ax=ax, label=f"log10 {LABELS[fixed]}")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(LABELS[x])
    ax.set_ylabel(LABELS["loss"])
    if x_range is None:
        ax.set_ylim(runs["loss"].min() * 0.9, runs["loss"].max() * 1.1)
    else:
        ax.set_xlim(lo, hi)
    plain_log_ticks(ax)
    ax.set_title(f"{fit.law.name} law: posterior median and credible bands at fixed {SYMBOL[fixed]}")
    ax.legend(fontsize="small", loc="upper right")
    return ax


def plot_isoflop(
    fit: Fit,
    budgets: Sequence[float] | None = None,
    probs: Sequence[float] = BAND_PROBS,
    span: float = 30.0,
    ax: Any = None,
) -> Any:
    """IsoFLOP profiles: loss against N at fixed budgets, and each budget's optimum with its interval.

    Parameters
    ----------
    fit
        A fitted law that plans without unique tokens (closed form or numerical optimum).
    budgets
        Compute budgets [FLOPs]; default the decades spanned by the runs.
    probs
        Probabilities of the nested credible bands; the optimum's error bars use the largest.
    span
        Each profile covers N_opt / span to N_opt x span.
    ax
        Matplotlib axes; a new figure when ``None``.
    """
    needs_allocation(fit, "IsoFLOP profiles")
    ax = axes(ax)
    runs = fit.runs.frame
    default = decades(runs["compute"].min(), runs["compute"].max())
    values = np.atleast_1d(np.asarray(default if budgets is None else budgets, dtype=float))
    cmap, norm = log_colours(values, "plasma")
    best = optimal_draws(fit, values)
    prob = max(probs)
    for i, budget in enumerate(values):
        colour = cmap(0.8 * norm(np.log10(budget)))  # the bright yellow end of plasma is hard to see
        n_opt = interval_dict(best["params"].isel(query=i), prob)
        loss_opt = interval_dict(best["loss"].isel(query=i), prob)
        grid = np.geomspace(n_opt["median"] / span, n_opt["median"] * span, 60)
        draws = _loss_draws(fit, grid, budget / (FLOPS_PER_PARAM_TOKEN * grid))
        band(ax, grid, draws, colour, probs, label=f"C = {fmt(budget)}", band_label=i == 0)
        ax.errorbar(
            n_opt["median"],
            loss_opt["median"],
            xerr=[[n_opt["median"] - n_opt["lower"]], [n_opt["upper"] - n_opt["median"]]],
            yerr=[[loss_opt["median"] - loss_opt["lower"]], [loss_opt["upper"] - loss_opt["median"]]],
            fmt="D",
            ms=5,
            color="black",
            mfc=colour,
            capsize=2,
            zorder=4,
            label=f"optimum, {prob:.0%} interval" if i == 0 else None,
        )
        near = np.abs(np.log10(runs["compute"] / budget)) < 0.1
        if near.any():
            ax.scatter(runs.loc[near, "params"], runs.loc[near, "loss"], color=colour, s=12, ec="k", lw=0.3)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(LABELS["params"] + ",  D = C / 6N")
    ax.set_ylabel(LABELS["loss"])
    plain_log_ticks(ax)
    ax.set_title("IsoFLOP profiles (points: runs within 25% of a budget)")
    ax.legend(fontsize="small", loc="upper right", ncols=2)
    return ax


def plot_allocation(
    fit: Fit,
    compute_range: tuple[float, float] | None = None,
    probs: Sequence[float] = BAND_PROBS,
    references: bool | None = None,
    ax: Any = None,
) -> Any:
    """The compute-optimal frontier: N_opt(C) and D_opt(C) with credible bands over many decades.

    Parameters
    ----------
    fit
        A fitted law that plans without unique tokens (closed form, or numerically as Kaplan's).
    compute_range
        Budgets [FLOPs]; default from the smallest run to 1e26 (at least 1e4 x the largest run).
    probs
        Probabilities of the nested credible bands.
    references
        Overlay Chinchilla 70B and the optima of Hoffmann's and Epoch's estimates at its budget;
        default when the runs are the bundled ``chinchilla`` data set.
    ax
        Matplotlib axes; a new figure when ``None``.
    """
    needs_allocation(fit, "the compute-optimal frontier")
    ax = axes(ax)
    runs = fit.runs.frame
    default = (runs["compute"].min(), max(1e26, runs["compute"].max() * 1e4))
    lo, hi = check_range(compute_range, "compute_range") or default
    grid = np.geomspace(lo, hi, 80)
    best = optimal_draws(fit, grid)
    band(ax, grid, best["params"], "C0", probs, label="N_opt, parameters", band_label=True)
    band(ax, grid, best["tokens"], "C1", probs, label="D_opt, tokens")
    if is_chinchilla_data(fit, references):
        c70 = refs.CHINCHILLA_70B
        ax.scatter([c70["compute"]] * 2, [c70["params"], c70["tokens"]], marker="*", s=140, color="k",
                   zorder=5, label="Chinchilla 70B (N, D)")  # fmt: skip
        for (label, estimate), marker in zip(refs.ESTIMATES.items(), ("s", "o"), strict=True):
            point = refs.optimal_point(estimate, c70["compute"])
            ax.scatter([c70["compute"]] * 2, [point["params"], point["tokens"]], marker=marker, s=36,
                       facecolor="none", edgecolor="k", zorder=5, label=f"optimum of {label}")  # fmt: skip
    ax.axvspan(
        runs["compute"].min(), runs["compute"].max(), color="0.9", zorder=0, label="compute of the runs"
    )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(LABELS["compute"])
    ax.set_ylabel("compute-optimal N or D [count]")
    ax.set_title(f"Compute-optimal allocation, {fit.law.name} law (C = 6ND)")
    ax.legend(fontsize="small", loc="upper left")
    return ax


def default_unique(fit: Fit) -> tuple[float, np.ndarray]:
    """The unique-token count trained on by the most model sizes, and up to four of those sizes.

    Ties go to the count with the most runs, then to the larger count. When no count is shared
    by two sizes (every run has its own U, say), the runs' median U and four sizes spanning all
    runs: a single run's size would draw a single curve.
    """
    runs = fit.runs.frame
    per_u = runs.groupby("unique_tokens")["params"].agg(["nunique", "size"])
    per_u = per_u.assign(unique=per_u.index.to_numpy(dtype=float))
    best = per_u.sort_values(["nunique", "size", "unique"]).iloc[-1]
    if best["nunique"] >= 2:
        unique = float(best["unique"])
        sizes = np.sort(runs.loc[runs["unique_tokens"] == unique, "params"].unique())
    else:
        values = np.sort(runs["unique_tokens"].to_numpy(dtype=float))
        unique = float(values[(len(values) - 1) // 2])
        sizes = np.sort(runs["params"].unique())
    if len(sizes) > 4:
        sizes = sizes[np.linspace(0, len(sizes) - 1, 4).round().astype(int)]
    return unique, sizes


def plot_epochs(
    fit: Fit,
    unique_tokens: float | None = None,
    params: Sequence[float] | float | None = None,
    epochs: tuple[float, float] | None = None,
    probs: Sequence[float] = BAND_PROBS,
    ax: Any = None,
) -> Any:
    """Loss against epochs over a fixed set of unique tokens, for a law of repeated data.

    Parameters
    ----------
    fit
        A fit of a law with ``unique_tokens`` (e.g. ``data-constrained``).
    unique_tokens
        U, the unique tokens [count]; default the value trained on by the most model sizes
        (:func:`default_unique`).
    params
        Model size(s) N, one curve each; default up to four sizes trained on U.
    epochs
        Range of epochs D / U; default 1 to the most epochs of any run on U (at least 100).
    probs
        Probabilities of the nested credible bands.
    ax
        Matplotlib axes; a new figure when ``None``.
    """
    needs_unique_tokens(fit, "loss against epochs")
    ax = axes(ax)
    runs = fit.runs.frame
    default_u, default_sizes = default_unique(fit)
    unique = float(unique_tokens) if unique_tokens is not None else default_u
    sizes = np.atleast_1d(np.asarray(params if params is not None else default_sizes, dtype=float))
    on_u = runs[np.isclose(runs["unique_tokens"], unique, rtol=1e-6)]
    most = float((on_u["tokens"] / unique).max()) if len(on_u) else 100.0
    lo, hi = check_range(epochs, "epochs") or (1.0, max(most, 100.0))
    grid = np.geomspace(lo, hi, 60)
    cmap, norm = log_colours(sizes)
    for i, n in enumerate(sizes):
        colour = cmap(norm(np.log10(n)) * 0.9)
        draws = predict_draws(fit, n, grid * unique, unique, random_seed=0)["loss"]
        band(ax, grid, draws, colour, probs, label=f"N = {fmt(n)}", band_label=i == 0)
        mine = on_u[np.isclose(on_u["params"], n, rtol=1e-6)]
        if len(mine):
            ax.scatter(mine["tokens"] / unique, mine["loss"], color=colour, s=16, ec="k", lw=0.4, zorder=4)
    ax.set_xscale("log")
    ax.set_xlabel("epochs D / U [repetitions of the unique data]")
    ax.set_ylabel(LABELS["loss"])
    ax.set_title(f"Repeating U = {fmt(unique)} unique tokens (points: runs on this U)")
    ax.legend(fontsize="small", loc="upper right")
    return ax


def plot_repeated_value(
    fit: Fit,
    epochs: tuple[float, float] | None = None,
    probs: Sequence[float] = BAND_PROBS,
    ax: Any = None,
) -> Any:
    """The value of repeated tokens: effective data D'/U against epochs D/U, with bands.

    Uses the data-constrained law's D' = U (1 + R_D* (1 - exp(-(D/U - 1) / R_D*))): repeated
    tokens are worth fresh ones at first (the diagonal) and saturate at U (1 + R_D*). ``epochs``
    is the range of D/U drawn, default 1 to 1000.
    """
    import xarray as xr

    needs_unique_tokens(fit, "the value of repeated tokens")
    if "R_D_star" not in fit.posterior:
        raise BayescaleError(f"law {fit.law.name!r} has no R_D_star parameter")
    ax = axes(ax)
    grid = np.geomspace(*(check_range(epochs, "epochs") or (1.0, 1000.0)), 80)
    r_d = fit.posterior["R_D_star"]
    repeats = xr.DataArray(grid - 1.0, dims="query")
    effective = 1.0 + r_d * -np.expm1(-repeats / r_d)
    band(ax, grid, effective.transpose("chain", "draw", "query"), "C2", probs,
         label="effective unique-data multiples D'/U", band_label=True)  # fmt: skip
    ax.plot(grid, grid, ls="--", color="0.4", lw=1, label="repeats worth fresh data (D' = D)")
    ceiling = interval_dict(1.0 + r_d, max(probs))
    ax.axhline(
        ceiling["median"], color="C2", ls=":", lw=1, label=f"ceiling 1 + R_D* = {ceiling['median']:.3g}"
    )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("epochs D / U [repetitions]")
    ax.set_ylabel("effective data D' / U [unique-data multiples]")
    ax.set_title("Value of repeated tokens (data-constrained law)")
    ax.legend(fontsize="small", loc="upper left")
    return ax
