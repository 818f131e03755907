"""Sampler settings as data: :class:`SamplerConfig`, the defaults every method builds on, the seed.

Also which backend samples the PyMC model when ``"auto"`` is asked for (:func:`choose_backend`).
"""

from __future__ import annotations

import importlib.util
import secrets
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bayescale.errors import BayescaleError

BACKENDS = ("auto", "jax", "numpyro", "nutpie", "pymc")

#: Seeds drawn for a fit given none lie in [0, SEED_RANGE): an int32, which every backend takes.
SEED_RANGE = 2**31


@dataclass(frozen=True)
class SamplerConfig:
    """How to sample: draws and tuning steps per chain, chains, backend.

    The defaults (4 chains x 1000 draws after 1000 tuning steps) give a bulk
    ESS above 1000 for every parameter of the bundled fits.
    """

    draws: int = 1000
    tune: int = 1000
    chains: int = 4
    backend: str = "auto"
    target_accept: float = 0.95
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("draws", "tune", "chains"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise BayescaleError(f"{name} must be a positive integer, got {value!r}")
        if self.backend not in BACKENDS:
            raise BayescaleError(f"unknown backend {self.backend!r}; use one of {list(BACKENDS)}")
        if not 0 < self.target_accept < 1:
            raise BayescaleError(f"target_accept must be in (0, 1), got {self.target_accept}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (stored in saved fits)."""
        return {
            "draws": self.draws,
            "tune": self.tune,
            "chains": self.chains,
            "backend": self.backend,
            "target_accept": self.target_accept,
        }


#: The settings a sampler configuration holds, and each one's default (a method overrides some:
#: each declares its own ``SAMPLER_DEFAULTS`` built from this).
SAMPLER_DEFAULTS: dict[str, Any] = {
    "draws": 1000,
    "tune": 1000,
    "chains": 4,
    "backend": "auto",
    "target_accept": 0.95,
}

#: What every fitting method accepts as ``sampler=``: a complete :class:`SamplerConfig`, or a
#: mapping of some of :data:`SAMPLER_DEFAULTS`' keys (the rest from the method's defaults).
type SamplerSettings = SamplerConfig | Mapping[str, Any]


def resolve_sampler(defaults: Mapping[str, Any], sampler: SamplerSettings | None = None) -> SamplerConfig:
    """The one way every method turns its sampler settings into a :class:`SamplerConfig`.

    Later sources override earlier ones: the method's ``defaults``, then ``sampler``
    (a :class:`SamplerConfig` gives every setting, a mapping some).

    Raises
    ------
    BayescaleError
        For a mapping key that is not a sampler setting, or a bad value.
    """
    settings = dict(defaults)
    extra: dict[str, Any] = {}
    if isinstance(sampler, SamplerConfig):
        settings.update(sampler.to_dict())
        extra = dict(sampler.extra)
    elif isinstance(sampler, Mapping):
        unknown = sorted(set(sampler) - set(SAMPLER_DEFAULTS) - {"extra"})
        if unknown:
            raise BayescaleError(
                f"unknown sampler setting(s) {unknown}; use some of {list(SAMPLER_DEFAULTS)}"
            )
        settings.update({k: v for k, v in sampler.items() if k != "extra"})
        extra = dict(sampler.get("extra") or {})
    elif sampler is not None:
        raise BayescaleError(
            f"sampler must be a SamplerConfig or a mapping of settings, got {type(sampler).__name__}"
        )
    return SamplerConfig(**settings, extra=extra)


def fold_sampler_keywords(
    sampler: SamplerSettings | None, keywords: Mapping[str, Any], caller: str
) -> SamplerSettings | None:
    """``sampler`` with the deprecated ``draws=``, ``tune=``, ... keywords of ``caller`` folded in.

    The keywords that are not ``None`` override ``sampler``'s settings, as they did when they
    were the way to give them; giving any emits a :class:`DeprecationWarning` that shows
    the ``sampler=`` mapping to write instead. Removed in the next release.

    Raises
    ------
    TypeError
        For a keyword that is not a sampler setting, as Python does for an unknown keyword.
    """
    unknown = sorted(set(keywords) - set(SAMPLER_DEFAULTS))
    if unknown:
        raise TypeError(f"{caller}() got unexpected keyword argument(s) {unknown}")
    given = {k: v for k, v in keywords.items() if v is not None}
    if not given:
        return sampler
    warnings.warn(
        f"{caller}: the keywords {', '.join(f'{k}=' for k in given)} are deprecated and will be removed "
        f"in the next release; pass sampler={given!r}",
        DeprecationWarning,
        stacklevel=3,
    )
    if isinstance(sampler, SamplerConfig):
        return SamplerConfig(**{**sampler.to_dict(), **given}, extra=dict(sampler.extra))
    if sampler is not None and not isinstance(sampler, Mapping):
        return sampler  # not settings at all: resolve_sampler says so
    return {**(sampler or {}), **given}


def installed(module: str) -> bool:
    """True when ``module`` can be imported."""
    return importlib.util.find_spec(module) is not None


def choose_backend(backend: str) -> str:
    """Resolve ``"auto"`` to the fastest installed backend of the PyMC model; check an explicit one.

    ``"jax"`` (no PyMC model) is chosen by :func:`run`, which knows the model:
    this is the fallback when the JAX density cannot represent it.
    """
    if backend == "auto":
        if installed("numpyro") and installed("jax"):
            return "numpyro"
        if installed("nutpie"):
            return "nutpie"
        return "pymc"
    modules = {"jax": ("numpyro", "jax"), "numpyro": ("numpyro", "jax"), "nutpie": ("nutpie",), "pymc": ()}
    missing = [m for m in modules[backend] if not installed(m)]
    if missing:
        raise BayescaleError(
            f"backend {backend!r} needs {missing} installed; `pip install bayescale[fast]` "
            "or choose backend='pymc'"
        )
    return backend


def resolve_seed(random_seed: int | None) -> int:
    """``random_seed``, or a seed drawn from the system's entropy when it is ``None``.

    A fit records the seed it ran with, so a fit made without one can be re-run exactly
    (``random_seed=fit.random_seed``, CLI ``--seed``).
    """
    if random_seed is None:
        return secrets.randbelow(SEED_RANGE)
    if isinstance(random_seed, bool) or not isinstance(random_seed, (int, np.integer)):
        raise BayescaleError(f"random_seed must be an integer or None, got {random_seed!r}")
    return int(random_seed)
