"""bayescale: Bayesian fitting of neural language-model scaling laws.

Fit a law to runs, then ask the posterior questions with credible intervals::

    import bayescale as bs

    fit = bs.fit("chinchilla", law="chinchilla", random_seed=1)
    fit.summary()
    fit.optimal(compute=5.76e23)
"""

from bayescale import datasets, plots
from bayescale._version import __version__
from bayescale.diagnostics import FitWarning
from bayescale.errors import (
    BayescaleError,
    DatasetError,
    FitFileError,
    LawError,
    PriorError,
    RunsError,
)
from bayescale.fit import Fit, fit
from bayescale.io import load_fit, save_fit
from bayescale.laws import ScalingLaw, get_law, list_laws
from bayescale.prior_predictive import prior_predictive
from bayescale.priors import Prior
from bayescale.report import write_report
from bayescale.runs import Runs

__all__ = [
    "BayescaleError",
    "DatasetError",
    "Fit",
    "FitFileError",
    "FitWarning",
    "LawError",
    "Prior",
    "PriorError",
    "Runs",
    "RunsError",
    "ScalingLaw",
    "__version__",
    "datasets",
    "fit",
    "get_law",
    "list_laws",
    "load_fit",
    "plots",
    "prior_predictive",
    "save_fit",
    "write_report",
]
