"""The protocol every scaling law follows, and the registry of laws by name."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any, ClassVar

import numpy as np

from bayescale.errors import LawError
from bayescale.model.laws import ops as _ops
from bayescale.model.priors import Prior


@dataclass(frozen=True)
class Parameter:
    """One named parameter of a law.

    Attributes
    ----------
    name
        Project-wide name (``E``, ``A``, ``alpha_N``, ...).
    prior
        Default prior.
    reason
        One line on why the default prior is what it is.
    description
        What the parameter means.
    """

    name: str
    prior: Prior
    reason: str
    description: str


@dataclass(frozen=True)
class Centering:
    """Sample an amplitude relative to a reference point of its covariate.

    ``log A - alpha_N log N`` is sampled as ``z - alpha_N (log N - ref)`` with
    ``z = log A - alpha_N ref`` and ``ref`` the mean of ``log N`` over the runs.
    This shear has unit Jacobian, so the user's prior on ``A`` is kept exactly,
    while the near-perfect posterior correlation of ``log A`` and ``alpha_N``
    disappears.
    """

    amplitude: str
    exponent: str
    covariate: str


class ScalingLaw:
    """Base class of a scaling law: named parameters plus one log-space mean.

    Subclasses set the class attributes and implement :meth:`log_loss`.
    """

    name: ClassVar[str]
    title: ClassVar[str]
    reference: ClassVar[str]
    formula: ClassVar[str]
    parameters: ClassVar[tuple[Parameter, ...]]
    #: Runs columns this law needs besides ``loss``.
    required_columns: ClassVar[tuple[str, ...]] = ("params", "tokens")
    centerings: ClassVar[tuple[Centering, ...]] = ()
    #: Parameters that vary by the runs' ``group`` column, partially pooled (see :meth:`pooling_parameters`).
    pooled: ClassVar[tuple[str, ...]] = ()
    #: Pooled parameters sampled as standard offsets (non-centred): those the groups barely separate.
    pooled_noncentred: ClassVar[tuple[str, ...]] = ()
    #: Noise parameters whose default prior this law replaces (by name), e.g. a heavy-tailed ``nu``.
    noise_defaults: ClassVar[tuple[Parameter, ...]] = ()

    @property
    def parameter_names(self) -> list[str]:
        """Names of the law's parameters, in declaration order."""
        return [p.name for p in self.parameters]

    def pooling_parameters(self) -> tuple[Parameter, ...]:
        """The spread across groups of each pooled parameter, ``<name>_tau``.

        A pooled parameter ``P`` takes a value per group, ``log P_g ~ Normal(log P, P_tau)``:
        ``P`` is the population median and ``P_tau`` the standard deviation of ``log P``
        across groups.
        """
        return tuple(
            Parameter(
                f"{name}_tau",
                Prior("HalfNormal", sigma=POOLING_SCALES.get(name, 0.5)),
                POOLING_REASONS.get(name, "spread of log value across groups; half-normal, scale 0.5"),
                f"standard deviation of log {name} across groups",
            )
            for name in self.pooled
        )

    def default_priors(self) -> dict[str, Prior]:
        """The default prior of every parameter, by name."""
        return {p.name: p.prior for p in self.parameters}

    def log_loss(self, theta: Mapping[str, Any], x: Mapping[str, Any], ops: SimpleNamespace) -> Any:
        """Log of the mean loss.

        Parameters
        ----------
        theta
            Parameter values by name (scalars, arrays, xarray or tensors).
        x
            Covariates on the log scale: ``log_params``, ``log_tokens`` and,
            where the law needs it, ``log_unique_tokens``.
        ops
            :data:`bayescale.model.laws.ops.NUMPY` or the PyTensor namespace.
        """
        raise NotImplementedError

    def loss(self, params: Mapping[str, Any], N: Any = None, D: Any = None, U: Any = None) -> np.ndarray:
        """Evaluate the law's mean loss at fixed parameter values, with numpy.

        Parameters
        ----------
        params
            A value for every parameter of the law.
        N, D, U
            Parameters, tokens and unique tokens, as far as the law needs them
            (see ``required_columns``); anything numpy broadcasts.
        """
        missing = [n for n in self.parameter_names if n not in params]
        if missing:
            raise LawError(f"law {self.name!r} needs values for {missing}")
        x = covariates(N, D, U)
        absent = [c for c in self.required_columns if f"log_{c}" not in x]
        if absent:
            raise LawError(f"law {self.name!r} needs {absent} to evaluate")
        theta = {k: np.asarray(v, dtype=float) for k, v in params.items()}
        return np.exp(self.log_loss(theta, x, _ops.NUMPY))

    def optimal_allocation(self, theta: Mapping[str, Any], compute: Any) -> dict[str, Any] | None:
        """Closed-form compute-optimal ``params`` and ``tokens`` at C = 6ND.

        Returns ``None`` when the law has no closed form.
        """
        return None

    def describe(self) -> dict[str, Any]:
        """A JSON-ready description: formula, reference, parameters and priors."""
        return {
            "name": self.name,
            "title": self.title,
            "formula": self.formula,
            "reference": self.reference,
            "required_columns": list(self.required_columns) + (["group"] if self.pooled else []),
            "pooled": list(self.pooled),
            "parameters": {
                p.name: {"description": p.description, "prior": p.prior.to_dict(), "reason": p.reason}
                for p in self.parameters + self.pooling_parameters()
            },
        }


#: Prior scale of the spread of log P across groups, per pooled parameter.
POOLING_SCALES = {"E": 0.2, "A": 0.5, "B": 0.5}
POOLING_REASONS = {
    "E": "irreducible loss differs across data sets by up to ~30% (log sd ~0.1-0.3); half-normal, scale 0.2",
    "A": "recipes move the size term's amplitude by a factor of ~1.5-3; half-normal on log sd, scale 0.5",
    "B": "data sets move the data term's amplitude by a factor of ~1.5-3; half-normal on log sd, scale 0.5",
}


def covariates(N: Any, D: Any, U: Any = None) -> dict[str, Any]:
    """Log-scale covariates from N, D and optional U, with positivity checks."""
    out = {}
    for key, value in (("params", N), ("tokens", D), ("unique_tokens", U)):
        if value is None:
            continue
        arr = value if hasattr(value, "dims") else np.asarray(value, dtype=float)
        if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
            raise LawError(f"{key} must be finite and > 0, got {value!r}")
        out[f"log_{key}"] = np.log(arr)
    return out


_REGISTRY: dict[str, ScalingLaw] = {}


def register(law: ScalingLaw) -> ScalingLaw:
    """Add a law instance to the registry under ``law.name``."""
    _REGISTRY[law.name] = law
    return law


def get_law(name: str | ScalingLaw) -> ScalingLaw:
    """Return the registered law called ``name`` (a law object passes through)."""
    if isinstance(name, ScalingLaw):
        return name
    try:
        return _REGISTRY[name]
    except KeyError:
        raise LawError(f"unknown law {name!r}; available: {', '.join(list_laws())}") from None


def list_laws() -> list[str]:
    """Names of the registered laws."""
    return sorted(_REGISTRY)
