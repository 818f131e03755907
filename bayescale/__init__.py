"""bayescale: Bayesian fitting of neural language-model scaling laws.

Fit a law to runs, then ask the posterior questions with credible intervals::

    import bayescale as bs

    fit = bs.fit("chinchilla", law="chinchilla", random_seed=1)
    fit.summary()
    fit.optimal(compute=5.76e23)

The package is layered, each folder importing only from the folders below it
(checked by ``make lint``): ``data`` (runs and curves tables, bundled data sets),
``model`` (priors, laws, likelihoods), ``inference`` (samplers, diagnostics),
``posterior`` (intervals and queries on draws), ``questions`` (planning, law
comparison, averaging, design), ``methods`` (the fitting methods and their
results), ``checks`` (predictive checks, calibration, extrapolation scores), and
the clients ``plots``, ``report`` and ``cli``. This module is the public API.

Importing the package loads none of it: each public name is imported from its module the
first time it is used (module ``__getattr__``), so ``import bayescale`` costs no pandas,
xarray, PyMC or JAX, and a command or notebook pays for what it uses. PyMC, PyTensor and
JAX wait for the first fit (a saved fit's answers never load them).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from bayescale import _aliases
from bayescale._version import __version__

if TYPE_CHECKING:  # what mypy and readers see; at run time __getattr__ imports each on first use
    from bayescale import plots
    from bayescale.checks.extrapolation import (
        Extrapolation,
        extrapolate,
        extrapolation_weights,
        rolling_extrapolation,
    )
    from bayescale.checks.predictive import predictive_check, residual_trends
    from bayescale.checks.prior_predictive import prior_predictive
    from bayescale.checks.verdict import Verdict, verdict
    from bayescale.data import datasets
    from bayescale.data.curves import Curves
    from bayescale.data.runs import Runs
    from bayescale.data.schedule import Schedule
    from bayescale.errors import (
        BayescaleError,
        DatasetError,
        FitFileError,
        LawError,
        PriorError,
        RunsError,
        RunsWarning,
    )
    from bayescale.inference.diagnostics import FitWarning
    from bayescale.inference.sampling import SamplerConfig
    from bayescale.methods.curves import CurvesFit, fit_curves
    from bayescale.methods.downstream import Downstream, fit_downstream
    from bayescale.methods.envelope import EnvelopeFit
    from bayescale.methods.front import fit
    from bayescale.methods.io import load_fit, save_fit
    from bayescale.methods.isoflop import IsoflopFit
    from bayescale.methods.many import JobResult, fit_many
    from bayescale.methods.parametric import Fit
    from bayescale.methods.side_by_side import compare_methods
    from bayescale.methods.training_steps import KAPLAN_2020, StepsFit
    from bayescale.model.laws import ScalingLaw, get_law, list_laws
    from bayescale.model.prior_sets import list_prior_sets, published_priors
    from bayescale.model.priors import Prior
    from bayescale.posterior.contraction import prior_contraction
    from bayescale.posterior.result import Result
    from bayescale.questions import design, plan
    from bayescale.questions.averaging import Averaged, average
    from bayescale.questions.compare import LooWarning, compare, loo, stacking_weights
    from bayescale.report import write_downstream_report, write_report

_aliases.install()

#: The public names, by the module defining them: imported from there on first use.
_NAMES_BY_MODULE = {
    "bayescale.checks.extrapolation": (
        "Extrapolation",
        "extrapolate",
        "extrapolation_weights",
        "rolling_extrapolation",
    ),
    "bayescale.checks.predictive": ("predictive_check", "residual_trends"),
    "bayescale.checks.prior_predictive": ("prior_predictive",),
    "bayescale.checks.verdict": ("Verdict", "verdict"),
    "bayescale.data.curves": ("Curves",),
    "bayescale.data.runs": ("Runs",),
    "bayescale.data.schedule": ("Schedule",),
    "bayescale.errors": (
        "BayescaleError",
        "DatasetError",
        "FitFileError",
        "LawError",
        "PriorError",
        "RunsError",
        "RunsWarning",
    ),
    "bayescale.inference.diagnostics": ("FitWarning",),
    "bayescale.inference.sampling": ("SamplerConfig",),
    "bayescale.methods.curves": ("CurvesFit", "fit_curves"),
    "bayescale.methods.downstream": ("Downstream", "fit_downstream"),
    "bayescale.methods.envelope": ("EnvelopeFit",),
    "bayescale.methods.front": ("fit",),
    "bayescale.methods.io": ("load_fit", "save_fit"),
    "bayescale.methods.isoflop": ("IsoflopFit",),
    "bayescale.methods.many": ("JobResult", "fit_many"),
    "bayescale.methods.parametric": ("Fit",),
    "bayescale.methods.side_by_side": ("compare_methods",),
    "bayescale.methods.training_steps": ("KAPLAN_2020", "StepsFit"),
    "bayescale.model.laws": ("ScalingLaw", "get_law", "list_laws"),
    "bayescale.model.prior_sets": ("list_prior_sets", "published_priors"),
    "bayescale.model.priors": ("Prior",),
    "bayescale.posterior.contraction": ("prior_contraction",),
    "bayescale.posterior.result": ("Result",),
    "bayescale.questions.averaging": ("Averaged", "average"),
    "bayescale.questions.compare": ("LooWarning", "compare", "loo", "stacking_weights"),
    "bayescale.report": ("write_downstream_report", "write_report"),
}

#: The public modules, by name.
_MODULES = {
    "datasets": "bayescale.data.datasets",
    "design": "bayescale.questions.design",
    "plan": "bayescale.questions.plan",
    "plots": "bayescale.plots",
}

#: Public name -> the module defining it.
_WHERE = {name: module for module, names in _NAMES_BY_MODULE.items() for name in names}

#: Names of earlier releases kept for one more, each a thin wrapper of :func:`fit` with a method.
_DEPRECATED_FUNCTIONS = {"fit_isoflop": "isoflop", "fit_envelope": "envelope", "fit_steps": "steps"}


def __getattr__(name: str) -> object:
    """Import a public name from its module on first use and keep it (later uses find it here)."""
    if name in _DEPRECATED_FUNCTIONS:
        from bayescale.methods.front import deprecated_method_function

        return deprecated_method_function(name, _DEPRECATED_FUNCTIONS[name])
    if name in _MODULES:
        value = importlib.import_module(_MODULES[name])
    elif name in _WHERE:
        value = getattr(importlib.import_module(_WHERE[name]), name)
    else:
        raise AttributeError(f"module 'bayescale' has no attribute {name!r}")
    globals()[name] = value  # found here from now on, without this function
    return value


def __dir__() -> list[str]:
    """The module's names with every public one, imported or not (for completion in a notebook)."""
    return sorted(set(globals()) | set(__all__))


__all__ = [
    "KAPLAN_2020",
    "Averaged",
    "BayescaleError",
    "Curves",
    "CurvesFit",
    "DatasetError",
    "Downstream",
    "EnvelopeFit",
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
    "Result",
    "Runs",
    "RunsError",
    "RunsWarning",
    "SamplerConfig",
    "ScalingLaw",
    "Schedule",
    "StepsFit",
    "Verdict",
    "__version__",
    "average",
    "compare",
    "compare_methods",
    "datasets",
    "design",
    "extrapolate",
    "extrapolation_weights",
    "fit",
    "fit_curves",
    "fit_downstream",
    "fit_many",
    "get_law",
    "list_laws",
    "list_prior_sets",
    "load_fit",
    "loo",
    "plan",
    "plots",
    "predictive_check",
    "prior_contraction",
    "prior_predictive",
    "published_priors",
    "residual_trends",
    "rolling_extrapolation",
    "save_fit",
    "stacking_weights",
    "verdict",
    "write_downstream_report",
    "write_report",
]
