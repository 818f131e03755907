"""Scaling-law variants, one module each, and their registry by name."""

from bayescale.laws import chinchilla as _chinchilla  # noqa: F401  (registers the law)
from bayescale.laws.base import Centering, Parameter, ScalingLaw, covariates, get_law, list_laws, register

__all__ = ["Centering", "Parameter", "ScalingLaw", "covariates", "get_law", "list_laws", "register"]
