"""Standard figures; each takes an optional ``ax`` and returns it.

Bands are drawn from posterior draws (quantiles over ``chain`` and ``draw``),
never from a point estimate.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from bayescale.intervals import interval

if TYPE_CHECKING:
    from bayescale.fit import Fit


def _axes(ax: Any) -> Any:
    if ax is not None:
        return ax
    import matplotlib.pyplot as plt

    _, ax = plt.subplots(figsize=(6.4, 4.4), layout="constrained")
    return ax


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
    from bayescale.plan import optimal_draws

    ax = _axes(ax)
    runs = fit.runs.frame
    lo, hi = compute_range or (runs["compute"].min(), runs["compute"].max() * 100)
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
    ax.set_xlabel("training compute C [FLOPs]")
    ax.set_ylabel("loss [nats/token]")
    ax.set_title(f"{fit.law.name} law on {len(runs)} runs")
    ax.legend(loc="upper right", fontsize="small")
    return ax
