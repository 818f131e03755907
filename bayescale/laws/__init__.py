"""Scaling-law variants, one module each, and their registry by name."""

from bayescale.laws import chinchilla as _chinchilla  # noqa: F401  (importing registers each law)
from bayescale.laws import data_constrained as _data_constrained  # noqa: F401
from bayescale.laws import kaplan as _kaplan  # noqa: F401
from bayescale.laws.base import Centering, Parameter, ScalingLaw, covariates, get_law, list_laws, register

__all__ = ["Centering", "Parameter", "ScalingLaw", "covariates", "get_law", "list_laws", "register"]
