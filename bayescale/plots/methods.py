"""Figures of the other methods' results: the IsoFLOP fit's profiles and its line of optima."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from bayescale.plots._common import BAND_PROBS, LABELS, band, figure, fmt, log_colours, plain_log_ticks
from bayescale.posterior.intervals import interval_dict

if TYPE_CHECKING:
    from bayescale.methods.isoflop import IsoflopFit


def _profile_log_loss(result: IsoflopFit, budget: int, log_n: np.ndarray) -> Any:
    """Draws (chain, draw, query) of one budget's profile of log loss at the log sizes ``log_n``."""
    import xarray as xr

    post = result.posterior.isel(budget=budget)
    u = xr.DataArray(log_n, dims="query") - post["log_params_opt"]
    s = result.posterior["skew"] if result.shape == "skewed" else None
    bowl = u**2 if s is None else 2.0 * (np.exp(s * u) - 1.0 - s * u) / s**2
    return (post["log_loss_opt"] + post["curvature"] * bowl).transpose("chain", "draw", "query")


def plot_isoflop_fit(result: IsoflopFit, probs: Sequence[float] = BAND_PROBS, span: float = 10.0) -> Any:
    """An IsoFLOP fit (Approach 2): each budget's fitted profile, and the line of its optima.

    Left: loss against N at each budget used by the fit, the runs of that budget
    (hollow: outside the profile window, so not fitted), the profile's posterior
    median with nested bands, and the optimum's ``max(probs)`` interval. Right:
    N_opt(C) = k C^a with bands, and each budget's optimum.

    Parameters
    ----------
    result
        A :class:`~bayescale.methods.isoflop.IsoflopFit`.
    probs
        Probabilities of the nested credible bands.
    span
        Each profile covers N_opt / span to N_opt x span, widened to its budget's runs.

    Returns
    -------
    matplotlib.figure.Figure
    """
    data = result.data
    used = data.budgets[data.budgets["used"]]
    runs = data.runs.frame
    budgets = used["budget"].to_numpy(dtype=float)
    cmap, norm = log_colours(budgets, "plasma")
    fig, grid = figure(1, 2, (12.0, 4.6))
    left, right = grid[0]
    prob = max(probs)
    post = result.posterior
    for i, (level, budget) in enumerate(zip(used.index, budgets, strict=True)):
        colour = cmap(0.8 * norm(np.log10(budget)))
        mine = data.level == level
        n_opt = interval_dict(np.exp(post["log_params_opt"].isel(budget=i)), prob)
        loss_opt = interval_dict(np.exp(post["log_loss_opt"].isel(budget=i)), prob)
        lo = min(n_opt["median"] / span, runs.loc[mine, "params"].min())
        hi = max(n_opt["median"] * span, runs.loc[mine, "params"].max())
        n_grid = np.geomspace(lo, hi, 60)
        draws = np.exp(_profile_log_loss(result, i, np.log(n_grid)))
        band(left, n_grid, draws, colour, probs, label=f"C = {fmt(budget)}", band_label=i == 0)
        fitted = mine & data.used
        left.scatter(runs.loc[fitted, "params"], runs.loc[fitted, "loss"], color=colour, s=14, ec="k",
                     lw=0.3, zorder=3)  # fmt: skip
        left.scatter(runs.loc[mine & ~data.used, "params"], runs.loc[mine & ~data.used, "loss"],
                     facecolor="none", edgecolor=colour, s=14, lw=0.8, zorder=3)  # fmt: skip
        n_err = [[n_opt["median"] - n_opt["lower"]], [n_opt["upper"] - n_opt["median"]]]
        marker = {"fmt": "D", "ms": 5, "color": "black", "mfc": colour, "capsize": 2, "zorder": 4}
        loss_err = [[loss_opt["median"] - loss_opt["lower"]], [loss_opt["upper"] - loss_opt["median"]]]
        label = f"optimum, {prob:.0%} interval" if i == 0 else None
        left.errorbar(n_opt["median"], loss_opt["median"], xerr=n_err, yerr=loss_err, label=label, **marker)
        right.errorbar(budget, n_opt["median"], yerr=n_err, label=label, **marker)
    left.set_xscale("log")
    left.set_yscale("log")
    left.set_xlabel(LABELS["params"])
    left.set_ylabel(LABELS["loss"])
    plain_log_ticks(left)
    left.set_title(f"IsoFLOP profiles ({result.shape}); hollow: runs outside the window")
    left.legend(fontsize="small", loc="upper right", ncols=2)
    c_grid = np.geomspace(budgets.min() / 3, budgets.max() * 3, 60)
    band(right, c_grid, result.optimal_draws(c_grid)["params"], "C0", probs, label="N_opt = k C^a",
         band_label=True)  # fmt: skip
    a = interval_dict(post["a"], prob)
    right.set_xscale("log")
    right.set_yscale("log")
    right.set_xlabel(LABELS["compute"])
    right.set_ylabel("compute-optimal N [count]")
    right.set_title(f"a = {a['median']:.3f} [{a['lower']:.3f}, {a['upper']:.3f}] ({prob:.0%})")
    right.legend(fontsize="small", loc="upper left")
    fig.suptitle(f"IsoFLOP fit on {len(runs)} runs, {len(used)} budgets")
    return fig
