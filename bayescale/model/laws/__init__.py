"""Scaling-law variants, one module each, and their registry by name."""

from bayescale.model.laws import chinchilla as _chinchilla  # noqa: F401  (importing registers each law)
from bayescale.model.laws import data_constrained as _data_constrained  # noqa: F401
from bayescale.model.laws import downstream as _downstream  # noqa: F401
from bayescale.model.laws import kaplan as _kaplan  # noqa: F401
from bayescale.model.laws.base import (
    Centering,
    Parameter,
    ScalingLaw,
    covariates,
    get_law,
    list_laws,
    register,
)

__all__ = ["Centering", "Parameter", "ScalingLaw", "covariates", "get_law", "list_laws", "register"]
