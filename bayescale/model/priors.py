"""Prior specifications: small serialisable objects that become PyMC variables.

A :class:`Prior` names a PyMC distribution and its arguments,
``Prior("Normal", mu=0.3, sigma=0.1)``. It round-trips through ``to_dict`` /
``from_dict`` so priors travel in saved fits, JSON/TOML files and on the
command line, and it draws from itself with numpy for prior predictive checks.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from bayescale.data.config import parse_config
from bayescale.errors import PriorError

# Distributions a prior may use, with the arguments each accepts. Kept explicit
# so a typo is caught when the prior is written, not deep inside PyMC.
SUPPORTED_DISTRIBUTIONS: dict[str, frozenset[str]] = {
    "Normal": frozenset({"mu", "sigma"}),
    "LogNormal": frozenset({"mu", "sigma"}),
    "HalfNormal": frozenset({"sigma"}),
    "TruncatedNormal": frozenset({"mu", "sigma", "lower", "upper"}),
    "StudentT": frozenset({"nu", "mu", "sigma"}),
    "HalfStudentT": frozenset({"nu", "sigma"}),
    "Gamma": frozenset({"alpha", "beta"}),
    "Exponential": frozenset({"lam"}),
    "Uniform": frozenset({"lower", "upper"}),
    "Beta": frozenset({"alpha", "beta"}),
}

# Distributions whose support is (0, inf); a positive parameter must use one of
# these (or a truncation / uniform range above zero).
#: Largest magnitude of a prior's argument: far past any scale of a law, and its square is finite.
MAX_ARGUMENT = 1e100

POSITIVE_DISTRIBUTIONS = frozenset({"LogNormal", "HalfNormal", "HalfStudentT", "Gamma", "Exponential"})

#: PyMC's default transform of each distribution to the sampler's unconstrained scale
#: (``None``: sampled as is); the JAX density applies the same ones.
TRANSFORMS: dict[str, str | None] = {
    "Normal": None,
    "StudentT": None,
    "LogNormal": "log",
    "HalfNormal": "log",
    "HalfStudentT": "log",
    "Gamma": "log",
    "Exponential": "log",
    "Uniform": "interval",
    "TruncatedNormal": "interval",
    "Beta": "logodds",
}

_LOG_2PI = math.log(2 * math.pi)


@dataclass(frozen=True)
class Prior:
    """A prior distribution for one law parameter.

    Parameters
    ----------
    distribution
        Name of a PyMC distribution, one of :data:`SUPPORTED_DISTRIBUTIONS`.
    **kwargs
        The distribution's arguments, as PyMC names them.

    Examples
    --------
    >>> Prior("Normal", mu=0.34, sigma=0.05)
    Prior("Normal", mu=0.34, sigma=0.05)
    """

    distribution: str
    kwargs: dict[str, float] = field(default_factory=dict)

    def __init__(self, distribution: str, **kwargs: float) -> None:
        if distribution not in SUPPORTED_DISTRIBUTIONS:
            raise PriorError(
                f"unknown prior distribution {distribution!r}; use one of {sorted(SUPPORTED_DISTRIBUTIONS)}"
            )
        allowed = SUPPORTED_DISTRIBUTIONS[distribution]
        unknown = set(kwargs) - allowed
        missing = _required_arguments(distribution) - set(kwargs)
        if unknown or missing:
            raise PriorError(f"{distribution} prior takes arguments {sorted(allowed)}; got {sorted(kwargs)}")
        clean: dict[str, float] = {}
        for key, value in kwargs.items():
            if isinstance(value, bool):  # float(True) is 1.0: `mu = true` is a mistake, not a number
                raise PriorError(f"{distribution} prior argument {key}={value!r} is not a number")
            try:
                number = float(value)
            except OverflowError:  # an integer of hundreds of digits
                raise PriorError(f"{distribution} prior argument {key} is too large for a number") from None
            except (TypeError, ValueError):
                raise PriorError(f"{distribution} prior argument {key}={value!r} is not a number") from None
            if not np.isfinite(number):
                raise PriorError(f"{distribution} prior argument {key}={value!r} is not finite")
            clean[key] = number
            if abs(number) > MAX_ARGUMENT:  # squares and exponentials of it must stay finite
                raise PriorError(
                    f"{distribution} prior argument {key}={number:g} is beyond +-{MAX_ARGUMENT:g}"
                )
        if distribution == "LogNormal" and (abs(clean["mu"]) > 700 or clean["sigma"] > 50):
            raise PriorError(
                f"LogNormal prior needs |mu| <= 700 and sigma <= 50 (both on the log scale: exp(mu) is "
                f"its median), got mu={clean['mu']:g}, sigma={clean['sigma']:g}"
            )
        for key in ("sigma", "lam", "alpha", "beta", "nu"):
            if key in clean and clean[key] <= 0:
                raise PriorError(f"{distribution} prior argument {key} must be > 0, got {clean[key]}")
        if "lower" in clean and "upper" in clean and clean["lower"] >= clean["upper"]:
            raise PriorError(
                f"{distribution} prior needs lower < upper, got {clean['lower']} >= {clean['upper']}"
            )
        object.__setattr__(self, "distribution", distribution)
        object.__setattr__(self, "kwargs", clean)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v:g}" for k, v in self.kwargs.items())
        return f'Prior("{self.distribution}", {args})'

    @property
    def is_positive(self) -> bool:
        """True when every draw of this prior is > 0."""
        if self.distribution in POSITIVE_DISTRIBUTIONS or self.distribution == "Beta":
            return True
        return self.kwargs.get("lower", -np.inf) >= 0

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict, ``{"distribution": ..., **kwargs}``."""
        return {"distribution": self.distribution, **self.kwargs}

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any]) -> Prior:
        """Build a prior from the dict written by :meth:`to_dict`."""
        if "distribution" not in spec:
            raise PriorError(f"prior {dict(spec)!r} has no 'distribution' key")
        rest = {k: v for k, v in spec.items() if k != "distribution"}
        return cls(str(spec["distribution"]), **rest)

    def create_variable(self, name: str, **kwargs: Any) -> Any:
        """Create the PyMC random variable ``name`` in the current model context.

        Parameters
        ----------
        name
            The variable's name in the model.
        **kwargs
            Passed on to the PyMC distribution with the prior's own arguments: its shape,
            e.g. ``dims="budget"`` for one variable per budget, or ``shape=``, ``initval=``.
        """
        import pymc as pm

        return getattr(pm, self.distribution)(name, **self.kwargs, **kwargs)

    def sample(self, rng: np.random.Generator, size: int | tuple[int, ...]) -> np.ndarray:
        """Draw from the prior with numpy (no PyMC model needed)."""
        import pymc as pm

        dist = getattr(pm, self.distribution).dist(**self.kwargs, size=size)
        # Python linker: the default (numba) writes its generated source to files in TMPDIR and
        # leaves them there, and one draw of one distribution gains nothing from compiling.
        return np.asarray(pm.draw(dist, random_seed=rng, mode="FAST_COMPILE"))

    def log_density(self, x: Any, ops: SimpleNamespace, log_x: Any = None) -> Any:
        """The log density at ``x``, written once over an ops namespace (:mod:`~bayescale.model.laws.ops`).

        The same value as PyMC's ``pm.logp`` of this distribution (checked for every
        distribution in ``tests/model/test_priors.py``); the JAX density sums it.

        Parameters
        ----------
        x
            Values in the support (numpy or JAX arrays, PyTensor tensors).
        ops
            The namespace of ``x``: ``ops.NUMPY``, ``ops.jax()`` or ``ops.tensor()``.
        log_x
            ``log x`` where the caller has it (a parameter sampled on the log scale),
            used for precision; else computed where needed.
        """
        k, d = self.kwargs, self.distribution
        if log_x is None and d in ("LogNormal", "Gamma", "Beta"):
            log_x = ops.log(x)
        if d == "Normal":
            return _normal_log_density(x, k["mu"], k["sigma"])
        if d == "LogNormal":
            return _normal_log_density(log_x, k["mu"], k["sigma"]) - log_x
        if d == "HalfNormal":
            return math.log(2) + _normal_log_density(x, 0.0, k["sigma"])
        if d == "TruncatedNormal":
            return _normal_log_density(x, k["mu"], k["sigma"]) - _truncated_normal_mass(self)
        if d in ("StudentT", "HalfStudentT"):
            nu, sigma = k["nu"], k["sigma"]
            z = (x - k.get("mu", 0.0)) / sigma
            const = math.lgamma((nu + 1) / 2) - math.lgamma(nu / 2) - 0.5 * math.log(math.pi * nu * sigma**2)
            const += math.log(2) if d == "HalfStudentT" else 0.0
            return const - (nu + 1) / 2 * ops.log1p(z * z / nu)
        if d == "Gamma":
            alpha, beta = k["alpha"], k["beta"]
            return alpha * math.log(beta) - math.lgamma(alpha) + (alpha - 1) * log_x - beta * x
        if d == "Exponential":
            return math.log(k["lam"]) - k["lam"] * x
        if d == "Uniform":
            return -math.log(k["upper"] - k["lower"]) + 0.0 * x
        if d == "Beta":
            alpha, beta = k["alpha"], k["beta"]
            log_beta_fn = math.lgamma(alpha) + math.lgamma(beta) - math.lgamma(alpha + beta)
            return (alpha - 1) * log_x + (beta - 1) * ops.log1p(-x) - log_beta_fn
        raise PriorError(f"no log density for prior {self!r}")

    def centre(self) -> float:
        """A point well inside the support (the median or mean): where a sampler may start."""
        k, d = self.kwargs, self.distribution
        if d in ("Normal", "StudentT"):
            return k.get("mu", 0.0)
        if d == "LogNormal":
            return math.exp(k["mu"])
        if d in ("HalfNormal", "HalfStudentT"):
            return 0.6745 * k["sigma"]
        if d == "Gamma":
            return k["alpha"] / k["beta"]
        if d == "Exponential":
            return math.log(2) / k["lam"]
        if d == "Beta":
            return k["alpha"] / (k["alpha"] + k["beta"])
        a, b = bounds(self)
        if d == "TruncatedNormal":
            mu, sigma = k["mu"], k["sigma"]
            if a < mu < b:
                return mu
            if math.isfinite(a) and math.isfinite(b):
                return 0.5 * (a + b)
            return a + sigma if math.isfinite(a) else b - sigma
        return 0.5 * (a + b)  # Uniform

    def describe(self) -> str:
        """A short human-readable form, e.g. ``LogNormal(mu=-1, sigma=0.6)``."""
        args = ", ".join(f"{k}={v:g}" for k, v in self.kwargs.items())
        return f"{self.distribution}({args})"


def bounds(prior: Prior) -> tuple[float, float]:
    """The prior's ``lower`` and ``upper`` arguments (infinite where not given)."""
    k = prior.kwargs
    return k.get("lower", -math.inf), k.get("upper", math.inf)


def support(prior: Prior) -> tuple[float, float]:
    """The interval every draw of ``prior`` lies in (its ends may be infinite)."""
    if prior.distribution in POSITIVE_DISTRIBUTIONS:
        return 0.0, math.inf
    if prior.distribution == "Beta":
        return 0.0, 1.0
    return bounds(prior)  # Normal, StudentT: the whole line; Uniform, TruncatedNormal: their bounds


def _normal_log_density(x: Any, mu: float, sigma: float) -> Any:
    z = (x - mu) / sigma
    return -0.5 * z * z - math.log(sigma) - 0.5 * _LOG_2PI


def _truncated_normal_mass(prior: Prior) -> float:
    """The log P(lower < X < upper) of the untruncated normal: a constant of the prior."""
    from scipy.special import log_ndtr

    k = prior.kwargs
    a, b = bounds(prior)
    lo, hi = (a - k["mu"]) / k["sigma"], (b - k["mu"]) / k["sigma"]
    if math.isfinite(a) and math.isfinite(b):
        # log(Phi(hi) - Phi(lo)) computed on the side of the mean where it is accurate.
        if lo > 0:
            lo, hi = -hi, -lo
        return float(log_ndtr(hi) + np.log1p(-np.exp(log_ndtr(lo) - log_ndtr(hi))))
    if math.isfinite(a):
        return float(log_ndtr(-lo))
    if math.isfinite(b):
        return float(log_ndtr(hi))
    return 0.0


def _required_arguments(distribution: str) -> set[str]:
    optional = {"TruncatedNormal": {"lower", "upper"}, "StudentT": {"mu"}}
    return set(SUPPORTED_DISTRIBUTIONS[distribution]) - optional.get(distribution, set())


def as_prior(value: Prior | Mapping[str, Any]) -> Prior:
    """Accept a :class:`Prior` or its dict form."""
    if isinstance(value, Prior):
        return value
    if isinstance(value, Mapping):
        return Prior.from_dict(value)
    raise PriorError(f"a prior must be a Prior or a dict, got {type(value).__name__}")


def prior_table(given: Any) -> Mapping[str, Any]:
    """``given`` priors by parameter name (``{}`` for None); PriorError for anything but a mapping."""
    if given is None:
        return {}
    if not isinstance(given, Mapping):
        raise PriorError(
            f"priors must map parameter names to priors (a table), got {type(given).__name__} {given!r}; "
            "a file of priors is read with read_priors_file (the command line's --priors FILE)"
        )
    return given


def override_priors(
    defaults: Mapping[str, Prior],
    given: Mapping[str, Prior | Mapping[str, Any]] | None,
    positive: Iterable[str] = (),
    not_overridable: Mapping[str, str] | None = None,
) -> dict[str, Prior]:
    """The default priors with the ``given`` ones in their place, every name checked.

    Parameters
    ----------
    defaults
        The model's parameters and their default priors, by name.
    given
        Priors replacing some defaults (:class:`Prior` or its dict form), by parameter name.
    positive
        Parameters that must keep a prior on positive values (:attr:`Prior.is_positive`).
    not_overridable
        Parameters of the model whose prior cannot be given, with why; named in the error.

    Raises
    ------
    PriorError
        For a name that is not a parameter (listing those that are), or a prior of a
        ``positive`` parameter that allows values <= 0.
    """
    merged = dict(defaults)
    for name, spec in prior_table(given).items():
        if not_overridable and name in not_overridable:
            raise PriorError(f"the prior of {name!r} cannot be given: {not_overridable[name]}")
        if name not in merged:
            raise PriorError(
                f"prior given for {name!r}, not a parameter of this model; parameters: {list(merged)}"
            )
        merged[name] = as_prior(spec)
    for name in positive:
        if name in merged and not merged[name].is_positive:
            raise PriorError(f"prior of {name!r} must be on positive values, got {merged[name]!r}")
    return merged


def priors_to_json(priors: Mapping[str, Prior]) -> str:
    """Serialise a name -> prior mapping as JSON (sorted, stable)."""
    return json.dumps({k: p.to_dict() for k, p in sorted(priors.items())}, sort_keys=True)


def priors_from_json(text: str) -> dict[str, Prior]:
    """Inverse of :func:`priors_to_json`."""
    raw = parse_config(text)
    if not isinstance(raw, dict):
        raise PriorError(f"priors must be a JSON object, got {type(raw).__name__}")
    return {k: Prior.from_dict(v) for k, v in raw.items()}


def read_priors_file(path: str | Path) -> dict[str, Prior]:
    """Read priors from a JSON or TOML file.

    The file maps parameter names to prior specs, e.g. in TOML::

        [alpha_N]
        distribution = "Normal"
        mu = 0.34
        sigma = 0.05
    """
    path = Path(path)
    if not path.is_file():
        raise PriorError(f"priors file {str(path)!r} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise PriorError(
            f"priors file {str(path)!r} is not UTF-8 text: {exc.reason} at byte {exc.start}"
        ) from None
    try:
        raw = parse_config(text, "toml" if path.suffix.lower() == ".toml" else "json")
    except ValueError as exc:
        raise PriorError(
            f"priors file {str(path)!r} is not valid {path.suffix[1:] or 'JSON'}: {exc}"
        ) from None
    if not isinstance(raw, dict):
        raise PriorError(f"priors file {str(path)!r} must map parameter names to priors")
    return {name: as_prior(spec) for name, spec in raw.items()}
