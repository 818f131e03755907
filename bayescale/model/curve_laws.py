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

from bayescale.data.schedule import CurveFeatures, loss_drop_cells
from bayescale.model.jax_backend import setup_jax
from bayescale.model.jax_density import Site, _backward, _forward
from bayescale.model.laws import ops
from bayescale.model.likelihoods import (
    Correlation,
    Likelihood,
    ar1_innovations,
    check_correlation,
    log_density,
)
from bayescale.model.priors import TRANSFORMS, Prior

#: The law's parameters in sampling order.
MULTIPOWER_PARAMETERS = ("L0", "A", "alpha", "B", "C", "beta", "gamma")


@dataclass(frozen=True)
class MultiPowerLaw:
    """The multi-power law (Luo et al. 2025) as a function of :class:`CurveFeatures`."""

    name: str = "multipower"

    def loss(self, theta: Mapping[str, Any], features: Mapping[str, Any], xp: Any = np) -> Any:
        """Loss at each checkpoint; ``theta``'s arrays broadcast against the checkpoints' axis."""
        return multipower_loss(theta, features, xp)


def multipower_loss(theta: Mapping[str, Any], features: Mapping[str, Any], xp: Any = np) -> Any:
    """``L0 + A S1^-alpha + B LD`` at each checkpoint of ``features`` (:func:`features_dict`).

    ``theta``'s values are scalars or arrays of shape ``(..., 1)`` against checkpoints ``(n,)``.
    """
    p = {k: xp.asarray(theta[k]) for k in MULTIPOWER_PARAMETERS}
    drop = loss_drop_cells(features, p["C"], p["beta"], p["gamma"], xp)
    return p["L0"] + p["A"] * xp.exp(-p["alpha"] * features["log_s1"]) + p["B"] * drop


def features_dict(features: CurveFeatures) -> dict[str, np.ndarray]:
    """:class:`CurveFeatures` as the dict :func:`multipower_loss` reads: its non-empty cells."""
    return features.cells()


def default_priors(lr_ref: float, loss_min: float) -> dict[str, Prior]:
    """Weakly informative priors, scaled by the data's peak LR and lowest loss.

    ``B`` multiplies LR changes: its prior centre is ``0.1 / lr_ref`` (a full decay from the peak
    lowering the loss by ~0.1 nats), a factor ~e^2 either way per sd. ``C`` is sampled as
    ``C_ref = C lr_ref^-gamma``, the scale of ``G``'s argument at the peak LR: ``C`` and ``gamma``
    trade off along ``log C - gamma log eta`` with ``log eta`` near ``log lr_ref`` (about -8), a
    curved ridge in ``(log C, log gamma)`` that ``C_ref`` straightens. Its prior is what the earlier
    ``C ~ LogNormal(0, 2)``, ``gamma ~ LogNormal(log 0.5, 0.7)`` imply for it: centre
    ``lr_ref^-0.5``, sd 3 on the log scale. ``L0`` sits below the lowest loss. ``tau`` is the sd
    of a curve's offset on log loss (a half-normal of scale 1%: a curve's level is not expected to
    sit more than a few percent off the law).
    """
    return {
        "L0": Prior("LogNormal", mu=math.log(0.8 * loss_min), sigma=0.5),
        "A": Prior("LogNormal", mu=math.log(0.5), sigma=1.5),
        "alpha": Prior("LogNormal", mu=math.log(0.5), sigma=0.7),
        "B": Prior("LogNormal", mu=math.log(0.1 / lr_ref), sigma=2.0),
        "C_ref": Prior("LogNormal", mu=-0.5 * math.log(lr_ref), sigma=3.0),
        "beta": Prior("LogNormal", mu=math.log(0.5), sigma=0.7),
        "gamma": Prior("LogNormal", mu=math.log(0.5), sigma=0.7),
        "sigma": Prior("HalfNormal", sigma=0.02),
        "rho": Prior("Beta", alpha=2.0, beta=2.0),
        "tau": Prior("HalfNormal", sigma=0.01),
    }


#: The sampled coordinates of the law: ``C`` is sampled as ``C_ref`` (:func:`default_priors`).
SAMPLED_LAW = ("L0", "A", "alpha", "B", "C_ref", "beta", "gamma")


def offset_name(i: int) -> str:
    """The site of the ``i``-th coordinate of the curves' zero-sum offsets (:func:`zero_sum_basis`)."""
    return f"u_{i}"


def zero_sum_basis(curves: int) -> np.ndarray:
    """An orthonormal basis ``H`` (``curves x (curves - 1)``) of the offsets that sum to zero.

    ``offsets = H u`` with ``u ~ Normal(0, tau)`` independently is PyMC's ``ZeroSumNormal(tau)``:
    each offset's sd is ``tau sqrt(1 - 1/curves)``, and their mean is the law's level.
    """
    centred = np.eye(curves) - 1.0 / curves
    q, _ = np.linalg.qr(centred)
    return q[:, : curves - 1]


@dataclass(frozen=True)
class CurveDensity:
    """Log posterior of the multi-power law on curves, in the interface of the fast path's Density.

    ``data`` holds the features (:func:`features_dict`), the log losses ``y``, ``curve`` (each
    checkpoint's curve), ``first`` (1.0 at each curve's first checkpoint), ``prev`` (the index of
    the previous checkpoint of the same curve) and ``log_lr_ref`` (``C = C_ref lr_ref^gamma``).
    With :attr:`offsets`, curve ``i``'s log losses sit ``offset_i`` off the law, the offsets a
    zero-sum normal of scale ``tau`` (``offsets = H u``, ``u ~ Normal(0, tau)``, ``H`` in ``data``
    as ``basis``): a curve's level is a random effect whose spread ``tau`` the curves measure; the
    offsets' mean is the law's own level, so they cannot trade with ``L0``. Centred, not
    non-centred: each curve's level is known to ~``sigma / sqrt(n)``, far below ``tau``, where a
    non-centred ``tau z_i`` would make a hyperbolic ridge in ``(tau, z_i)``. The ``u_i`` sites
    carry a ``Normal(0, 1)`` prior for the driver's bookkeeping, cancelled in :meth:`_log_lik`.
    """

    law: MultiPowerLaw
    likelihood: Likelihood
    sites: tuple[Site, ...]
    fixed: dict[str, float]
    data: dict[str, Any]
    correlation: Correlation = "none"
    offsets: bool = True
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
        law = {**theta, "C": theta["C_ref"] * jnp.exp(theta["gamma"] * data["log_lr_ref"])}
        loss = multipower_loss(law, data, jnp)
        # A draw whose loss goes negative somewhere has no likelihood: -inf there, finite elsewhere.
        mu = jnp.log(jnp.where(loss > 0, loss, 1e-300))
        hierarchy: Any = 0.0
        if self.offsets:
            u = jnp.stack([theta[offset_name(i)] for i in range(data["basis"].shape[1])])
            mu = mu + (data["basis"] @ u)[data["curve"]]
            tau = theta["tau"]
            # u ~ Normal(0, tau), less the sites' own Normal(0, 1) counted in the prior
            hierarchy = jnp.sum(-0.5 * (u / tau) ** 2 - jnp.log(tau) + 0.5 * u**2)
        resid = data["y"] - mu
        sigma = theta["sigma"]
        if self.correlation == "ar1":
            resid, sigma = ar1_innovations(
                resid, resid[data["prev"]], data["first"] > 0, theta["rho"], sigma, jops
            )
        out = jnp.sum(log_density(self.likelihood, resid / sigma, sigma * jnp.ones_like(resid), None, jops))
        return jnp.where(jnp.all(loss > 0), out + hierarchy, -jnp.inf)

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
    correlation: Correlation = "none",
    offsets: bool = True,
    lr_ref: float = 1.0,
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
        Which curve each checkpoint belongs to (contiguous blocks, numbered ``0 .. m - 1``).
    priors
        A prior for each of :data:`SAMPLED_LAW`, ``sigma``, (AR(1)) ``rho`` and (offsets) ``tau``.
    correlation
        ``"ar1"`` or ``"none"``.
    offsets
        Whether each curve has its own offset (``tau z_i``) on log loss.
    lr_ref
        The reference LR of ``C_ref = C lr_ref^-gamma``.
    start
        Values of the sampled parameters (``u_i`` included) where the mode search starts; by
        default the priors' centres.
    """
    check_correlation(correlation)
    setup_jax()
    curve_index = np.asarray(curve_index)
    names = [*SAMPLED_LAW, "sigma"] + (["rho"] if correlation == "ar1" else []) + (["tau"] if offsets else [])
    sites = []
    for name in names:
        prior = priors[name]
        transform = TRANSFORMS[prior.distribution]
        suffix = f"_{transform}__" if transform else ""
        sites.append(Site(name, f"{name}{suffix}", prior, transform))
    curves = int(curve_index.max()) + 1
    if offsets:
        if curves < 2:
            raise ValueError(
                "per-curve offsets need at least 2 curves (their spread is measured across curves)"
            )
        unit = Prior("Normal", mu=0.0, sigma=1.0)
        sites += [Site(offset_name(i), offset_name(i), unit, None) for i in range(curves - 1)]
    first = np.r_[True, curve_index[1:] != curve_index[:-1]]
    prev = np.where(first, np.arange(len(first)), np.arange(len(first)) - 1)
    data = {
        **features_dict(features),
        "y": np.log(np.asarray(loss, dtype=float)),
        "curve": curve_index,
        "first": first.astype(float),
        "prev": prev,
        "log_lr_ref": np.asarray(math.log(lr_ref)),
        "basis": zero_sum_basis(curves),
    }
    at = None if start is None else tuple(float(_forward(s.prior, s.transform, start[s.name])) for s in sites)
    return CurveDensity(MultiPowerLaw(), "normal", tuple(sites), {}, data, correlation, offsets, at)
