"""The multi-power law of a loss curve under a learning-rate schedule, and its JAX density.

Luo et al. (2025) model the loss at step ``t`` of a run as

    L(t) = L0 + A * S1(t)^-alpha + B * LD(t)

with ``S1`` the summed learning rate and ``LD`` the loss-drop sum of the LR decreases so far
(:mod:`bayescale.data.schedule` computes both's inputs once, in numpy). The mean is written once
over numpy / ``jax.numpy`` (:func:`multipower_loss`). :class:`CurveDensity` is its log posterior on
the sampler's unconstrained scale, with the same interface as
:class:`~bayescale.model.jax_density.Density` so the project's NUTS driver
(:func:`~bayescale.inference.sampling.sample_density`: Laplace step, whitening, diagnostics) samples
it unchanged. Noise is on log loss, Normal; residuals of one curve are an AR(1) series
(``correlation="ar1"``, :func:`~bayescale.model.likelihoods.ar1_innovations`) or independent
(``"none"``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from bayescale.data.schedule import CurveFeatures
from bayescale.model.jax_backend import setup_jax
from bayescale.model.jax_density import Site, _backward, _forward
from bayescale.model.laws import ops
from bayescale.model.likelihoods import ar1_innovations, log_density
from bayescale.model.priors import TRANSFORMS, Prior

#: The law's parameters in sampling order.
MULTIPOWER_PARAMETERS = ("L0", "A", "alpha", "B", "C", "beta", "gamma")

#: Residual structures along a curve.
CORRELATIONS = ("ar1", "none")


@dataclass(frozen=True)
class MultiPowerLaw:
    """The multi-power law (Luo et al. 2025) as a function of :class:`CurveFeatures`."""

    name: str = "multipower"

    def loss(self, theta: Mapping[str, Any], features: Mapping[str, Any], xp: Any = np) -> Any:
        """Loss at each checkpoint; ``theta``'s arrays broadcast against the checkpoints' axis."""
        return multipower_loss(theta, features, xp)


def multipower_loss(theta: Mapping[str, Any], features: Mapping[str, Any], xp: Any = np) -> Any:
    """``L0 + A S1^-alpha + B LD`` at each checkpoint of ``features`` (keys ``s1, weight, lr, area``).

    ``theta``'s values are scalars or arrays of shape ``(..., 1)`` against checkpoints ``(n,)``.
    """
    p = {k: xp.asarray(theta[k]) for k in MULTIPOWER_PARAMETERS}
    scale = p["C"][..., None] * features["lr"] ** (-p["gamma"][..., None])
    g = 1 - (1 + scale * features["area"]) ** (-p["beta"][..., None])
    drop = xp.sum(features["weight"] * g, axis=-1)
    return p["L0"] + p["A"] * features["s1"] ** (-p["alpha"]) + p["B"] * drop


def features_dict(features: CurveFeatures) -> dict[str, np.ndarray]:
    """:class:`CurveFeatures` as the dict :func:`multipower_loss` reads."""
    return {"s1": features.s1, "weight": features.weight, "lr": features.lr, "area": features.area}


def default_priors(lr_ref: float, loss_min: float) -> dict[str, Prior]:
    """Weakly informative priors, scaled by the data's peak LR and lowest loss.

    ``B`` multiplies LR changes: its prior centre is ``0.1 / lr_ref`` (a full decay from the peak
    lowering the loss by ~0.1 nats), a factor ~e^2 either way per sd. ``C eta^-gamma S`` must be of
    order one after ~1/lr_ref's worth of summed LR. ``L0`` sits below the lowest loss.
    """
    return {
        "L0": Prior("LogNormal", mu=math.log(0.8 * loss_min), sigma=0.5),
        "A": Prior("LogNormal", mu=math.log(0.5), sigma=1.5),
        "alpha": Prior("LogNormal", mu=math.log(0.5), sigma=0.7),
        "B": Prior("LogNormal", mu=math.log(0.1 / lr_ref), sigma=2.0),
        "C": Prior("LogNormal", mu=0.0, sigma=2.0),
        "beta": Prior("LogNormal", mu=math.log(0.5), sigma=0.7),
        "gamma": Prior("LogNormal", mu=math.log(0.5), sigma=0.7),
        "sigma": Prior("HalfNormal", sigma=0.02),
        "rho": Prior("Beta", alpha=2.0, beta=2.0),
    }


@dataclass(frozen=True)
class CurveDensity:
    """Log posterior of the multi-power law on curves, in the interface of the fast path's Density.

    ``data`` holds the features (``s1``, ``weight``, ``lr``, ``area``), the log losses ``y``,
    ``first`` (1.0 at each curve's first checkpoint) and ``prev`` (the index of the previous
    checkpoint of the same curve).
    """

    law: MultiPowerLaw
    likelihood: str
    sites: tuple[Site, ...]
    fixed: dict[str, float]
    data: dict[str, Any]
    correlation: str = "ar1"
    start: tuple[float, ...] | None = None

    @property
    def size(self) -> int:
        """Number of unconstrained coordinates."""
        return len(self.sites)

    def constrain(self, position: Any, xp: Any = np) -> dict[str, Any]:
        """Parameter values from unconstrained coordinates (last axis)."""
        with np.errstate(over="ignore"):
            return self._theta_and_log_prior(position, xp)[0]

    def logp(self, position: Any, data: Mapping[str, Any]) -> Any:
        """Log posterior density (up to a constant), with JAX."""
        import jax.numpy as jnp

        theta, log_prior = self._theta_and_log_prior(position, jnp)
        return log_prior + self._log_lik(theta, data)

    logp_unchunked = logp

    def _log_lik(self, theta: Mapping[str, Any], data: Mapping[str, Any]) -> Any:
        import jax.numpy as jnp

        jops = ops.jax()
        loss = multipower_loss(theta, data, jnp)
        # A draw whose loss goes negative somewhere has no likelihood: -inf there, finite elsewhere.
        mu = jnp.log(jnp.where(loss > 0, loss, 1e-300))
        resid = data["y"] - mu
        sigma = theta["sigma"]
        if self.correlation == "ar1":
            resid, sigma = ar1_innovations(
                resid, resid[data["prev"]], data["first"] > 0, theta["rho"], sigma, jops
            )
        out = jnp.sum(log_density(self.likelihood, resid / sigma, sigma * jnp.ones_like(resid), None, jops))
        return jnp.where(jnp.all(loss > 0), out, -jnp.inf)

    def initial_point(self) -> np.ndarray:
        """Where the mode search starts: :attr:`start` when given, else the priors' centres."""
        if self.start is not None:
            return np.asarray(self.start, dtype=float)
        return np.asarray([float(_forward(s.prior, s.transform, s.prior.centre())) for s in self.sites])

    def whitened(self, shift: np.ndarray, root: np.ndarray) -> CurveDensity:
        """The same density on coordinates ``u`` with ``position = shift + root @ u`` (a constant Jacobian).

        ``shift`` and ``root`` go into :attr:`data` (arguments of a compiled program, not constants).
        """
        data = {**self.data, "shift": np.asarray(shift, dtype=float), "root": np.asarray(root, dtype=float)}
        return replace(self, data=data, start=tuple(np.zeros(len(self.sites))))

    def _theta_and_log_prior(self, position: Any, xp: Any) -> tuple[dict[str, Any], Any]:
        if "shift" in self.data:
            position = xp.asarray(self.data["shift"]) + position @ xp.asarray(self.data["root"]).T
        theta: dict[str, Any] = dict(self.fixed)
        space = ops.NUMPY if xp is np else ops.jax()
        total: Any = 0.0
        for i, s in enumerate(self.sites):
            value, log_value, jac = _backward(s.prior, s.transform, position[..., i], xp)
            theta[s.name] = value
            total = total + s.prior.log_density(value, space, log_value) + jac
        return theta, total


def build_curve_density(
    features: CurveFeatures,
    loss: np.ndarray,
    curve_index: np.ndarray,
    priors: Mapping[str, Prior],
    correlation: str = "ar1",
    start: Mapping[str, float] | None = None,
) -> CurveDensity:
    """The :class:`CurveDensity` of curves stacked checkpoint by checkpoint.

    Parameters
    ----------
    features
        Features of every checkpoint, curves one after another, each in step order.
    loss
        Loss at each checkpoint.
    curve_index
        Which curve each checkpoint belongs to (contiguous blocks).
    priors
        A prior for each of :data:`MULTIPOWER_PARAMETERS`, ``sigma`` and (AR(1)) ``rho``.
    correlation
        ``"ar1"`` or ``"none"``.
    start
        Parameter values where the mode search starts (e.g. a least-squares fit); by default
        the priors' centres.
    """
    if correlation not in CORRELATIONS:
        raise ValueError(f"correlation {correlation!r} is not one of {list(CORRELATIONS)}")
    setup_jax()
    names = [*MULTIPOWER_PARAMETERS, "sigma"] + (["rho"] if correlation == "ar1" else [])
    sites = []
    for name in names:
        prior = priors[name]
        transform = TRANSFORMS[prior.distribution]
        suffix = f"_{transform}__" if transform else ""
        sites.append(Site(name, f"{name}{suffix}", prior, transform))
    curve_index = np.asarray(curve_index)
    first = np.r_[True, curve_index[1:] != curve_index[:-1]]
    prev = np.where(first, np.arange(len(first)), np.arange(len(first)) - 1)
    data = {
        **features_dict(features),
        "y": np.log(np.asarray(loss, dtype=float)),
        "first": first.astype(float),
        "prev": prev,
    }
    at = None if start is None else tuple(float(_forward(s.prior, s.transform, start[s.name])) for s in sites)
    return CurveDensity(MultiPowerLaw(), "normal", tuple(sites), {}, data, correlation, at)
