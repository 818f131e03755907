"""bayescale: Bayesian fitting of neural language-model scaling laws.

Fit a law to runs, then ask the posterior questions with credible intervals::

    import bayescale as bs

    fit = bs.fit("chinchilla", law="chinchilla", random_seed=1)
    fit.summary()
    fit.optimal(compute=5.76e23)
"""

from bayescale import datasets, design, plan, plots
from bayescale._version import __version__
from bayescale.averaging import Averaged, average
from bayescale.compare import (
    Extrapolation,
    LooWarning,
    compare,
    extrapolate,
    extrapolation_weights,
    loo,
    rolling_extrapolation,
    stacking_weights,
)
from bayescale.curves import Curves
from bayescale.diagnostics import FitWarning
from bayescale.errors import (
    BayescaleError,
    DatasetError,
    FitFileError,
    LawError,
    PriorError,
    RunsError,
    RunsWarning,
)
from bayescale.fit import Fit, fit
from bayescale.io import load_fit, save_fit
from bayescale.isoflop import IsoflopFit, fit_isoflop
from bayescale.laws import ScalingLaw, get_law, list_laws
from bayescale.many import JobResult, fit_many
from bayescale.prior_predictive import prior_predictive
from bayescale.prior_sets import list_prior_sets, published_priors
from bayescale.priors import Prior
from bayescale.report import write_report
from bayescale.runs import Runs
from bayescale.training_steps import KAPLAN_2020, StepsFit, fit_steps

__all__ = [
    "KAPLAN_2020",
    "Averaged",
    "BayescaleError",
    "Curves",
    "DatasetError",
    "Extrapolation",
    "Fit",
    "FitFileError",
    "FitWarning",
    "IsoflopFit",
    "JobResult",
    "LawError",
    "LooWarning",
    "Prior",
    "PriorError",
    "Runs",
    "RunsError",
    "RunsWarning",
    "ScalingLaw",
    "StepsFit",
    "__version__",
    "average",
    "compare",
    "datasets",
    "design",
    "extrapolate",
    "extrapolation_weights",
    "fit",
    "fit_isoflop",
    "fit_many",
    "fit_steps",
    "get_law",
    "list_laws",
    "list_prior_sets",
    "load_fit",
    "loo",
    "plan",
    "plots",
    "prior_predictive",
    "published_priors",
    "rolling_extrapolation",
    "save_fit",
    "stacking_weights",
    "write_report",
]
