"""Deprecated module paths of bayescale 0.x, kept importable for one release.

``import bayescale.plan`` (and every other flat module of earlier releases)
still works and returns the module at its new place in the layers, with a
:class:`DeprecationWarning` naming the new path.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import warnings
from types import ModuleType

#: Old module path -> new module path.
MOVED = {
    "bayescale.runs": "bayescale.data.runs",
    "bayescale.curves": "bayescale.data.curves",
    "bayescale.datasets": "bayescale.data.datasets",
    "bayescale.laws": "bayescale.model.laws",
    "bayescale.priors": "bayescale.model.priors",
    "bayescale.prior_sets": "bayescale.model.prior_sets",
    "bayescale.jax_density": "bayescale.model.jax_density",
    "bayescale.sampling": "bayescale.inference.sampling",
    "bayescale.diagnostics": "bayescale.inference.diagnostics",
    "bayescale.intervals": "bayescale.posterior.intervals",
    "bayescale.plan": "bayescale.questions.plan",
    "bayescale.design": "bayescale.questions.design",
    "bayescale.compare": "bayescale.questions.compare",
    "bayescale.averaging": "bayescale.questions.averaging",
    "bayescale.io": "bayescale.methods.io",
    "bayescale.isoflop": "bayescale.methods.isoflop",
    "bayescale.envelope": "bayescale.methods.envelope",
    "bayescale.training_steps": "bayescale.methods.training_steps",
    "bayescale.many": "bayescale.methods.many",
    "bayescale.prior_predictive": "bayescale.checks.prior_predictive",
    "bayescale.calibration": "bayescale.checks.calibration",
}


for _law_module in ("base", "ops", "chinchilla", "data_constrained", "kaplan"):
    MOVED[f"bayescale.laws.{_law_module}"] = f"bayescale.model.laws.{_law_module}"


class _AliasLoader(importlib.abc.Loader):
    """Loads an old path as the module at its new path (no second copy of the module)."""

    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> None:
        return None

    def exec_module(self, module: ModuleType) -> None:
        warnings.warn(
            f"{module.__name__} moved to {self.target}; the old path goes in the next release",
            DeprecationWarning,
            stacklevel=2,
        )
        # The import system returns whatever sys.modules holds under the old name after this call.
        sys.modules[module.__name__] = importlib.import_module(self.target)


class _AliasFinder(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: object = None, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in MOVED:
            return None
        return importlib.machinery.ModuleSpec(fullname, _AliasLoader(MOVED[fullname]))


def install() -> None:
    """Make the old module paths importable (idempotent); first, so no file finder loads a second copy."""
    if not any(isinstance(finder, _AliasFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _AliasFinder())
