"""Standard figures of a fit; each takes an optional ``ax`` and returns it (or a Figure if multi-panel).

Bands are drawn from posterior draws (quantiles over ``chain`` and ``draw``),
never from a point estimate. Axis labels carry units; quantities spanning
decades are on log scales.
"""

from bayescale.plots.comparison import plot_elpd, plot_extrapolation, plot_plans
from bayescale.plots.curves import (
    plot_allocation,
    plot_epochs,
    plot_frontier,
    plot_isoflop,
    plot_loss,
    plot_repeated_value,
)
from bayescale.plots.downstream import plot_downstream
from bayescale.plots.methods import plot_isoflop_fit
from bayescale.plots.posterior import (
    plot_pair,
    plot_ppc,
    plot_prior_posterior,
    plot_prior_predictive,
    plot_residuals,
)

__all__ = [
    "plot_allocation",
    "plot_downstream",
    "plot_elpd",
    "plot_epochs",
    "plot_extrapolation",
    "plot_frontier",
    "plot_isoflop",
    "plot_isoflop_fit",
    "plot_loss",
    "plot_pair",
    "plot_plans",
    "plot_ppc",
    "plot_prior_posterior",
    "plot_prior_predictive",
    "plot_repeated_value",
    "plot_residuals",
]
