"""The JAX log posterior of the multi-power law on loss curves (:class:`CurveDensity`).

It has the interface of :class:`~bayescale.model.jax_density.Density`, so the project's NUTS
driver (:func:`~bayescale.inference.sampling.sample_density`: Laplace step, whitening,
diagnostics) samples it unchanged. Noise is on log loss, Normal; residuals of one curve are an
AR(1) series (``correlation="ar1"``, :func:`~bayescale.model.likelihoods.ar1_innovations`) or
independent (``"none"``), around per-curve offsets or a random walk
(:mod:`bayescale.model.curve_walk`), both integrated out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from bayescale.data.schedule import CurveFeatures
from bayescale.errors import BayescaleError
from bayescale.model.curve_laws import (
    MultiPowerLaw,
    features_dict,
    law_parameters,
    law_site_names,
    multipower_loss,
    noise_site_names,
    offset_terms,
    per_size,
)
from bayescale.model.curve_walk import walk_log_lik, walk_structure, walk_time
from bayescale.model.jax_backend import setup_jax
from bayescale.model.jax_density import Site, _backward, _forward
from bayescale.model.laws import ops
from bayescale.model.likelihoods import Correlation, Likelihood, check_correlation
from bayescale.model.priors import TRANSFORMS, Prior


@dataclass(frozen=True)
class CurveDensity:
    """Log posterior of the multi-power law on curves, in the interface of the fast path's Density.

    ``data`` holds the features (:func:`~bayescale.model.curve_laws.features_dict`), the log
    losses ``y``, ``group`` (each checkpoint's model size, an index into :attr:`sizes`),
    ``log_size`` (per size, log N less their mean), ``member`` (curves x checkpoints), ``first``
    (1.0 at each curve's first checkpoint), ``prev`` (the index of the previous checkpoint of the
    same curve) and ``log_lr_ref`` (``C = C_ref lr_ref^gamma``). With :attr:`offsets`, each
    curve's log losses sit an offset ``o_i ~ Normal(0, tau)`` off the law, integrated out in
    closed form (:func:`~bayescale.model.curve_laws.offset_terms`): no per-curve coordinate, so
    no funnel between ``tau`` and the offsets (centred, the chains of a 100M fit split between
    ``tau`` ~1e-4 and ~3e-3).
    """

    law: MultiPowerLaw
    likelihood: Likelihood
    sites: tuple[Site, ...]
    fixed: dict[str, float]
    data: dict[str, Any]
    correlation: Correlation = "none"
    offsets: bool = True
    sizes: tuple[str, ...] = ("",)
    start: tuple[float, ...] | None = None
    walk: bool = False

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

        group = data["group"]
        law = law_parameters(theta, self.sizes, group, data["log_size"], data["log_lr_ref"], jnp)
        loss = multipower_loss(law, data, jnp)
        # A draw whose loss goes negative somewhere has no likelihood: -inf there, finite elsewhere.
        resid = data["y"] - jnp.log(jnp.where(loss > 0, loss, 1e-300))
        sigma = per_size(theta, "sigma", self.sizes, group, jnp)
        if self.walk:
            tau = theta["tau"] if self.offsets else 0.0
            out = walk_log_lik(resid, sigma, tau, theta["kappa"], data, jnp)
            return jnp.where(jnp.all(loss > 0), out, -jnp.inf)
        out, a, b = offset_terms(resid, sigma, theta.get("rho"), data, self.correlation, jnp)
        if self.offsets:
            tau2 = theta["tau"] ** 2
            out = out + jnp.sum(-0.5 * jnp.log1p(tau2 * a) + 0.5 * b**2 / (1 / tau2 + a))
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


def curve_structure(curve_index: np.ndarray) -> dict[str, np.ndarray]:
    """``member``, ``first`` and ``prev`` of checkpoints stacked curve by curve (:class:`CurveDensity`)."""
    curve_index = np.asarray(curve_index)
    first = np.r_[True, curve_index[1:] != curve_index[:-1]]
    prev = np.where(first, np.arange(len(first)), np.arange(len(first)) - 1)
    member = (np.arange(int(curve_index.max()) + 1)[:, None] == curve_index[None, :]).astype(float)
    return {"member": member, "first": first.astype(float), "prev": prev}


def build_curve_density(
    features: CurveFeatures,
    loss: np.ndarray,
    curve_index: np.ndarray,
    priors: Mapping[str, Prior],
    correlation: Correlation = "none",
    offsets: bool = True,
    lr_ref: float = 1.0,
    start: Mapping[str, float] | None = None,
    sizes: Sequence[str] = ("",),
    group: np.ndarray | None = None,
    log_size: Any = (0.0,),
    walk_ref: float | None = None,
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
        A prior for each sampled parameter (:func:`~bayescale.model.curve_laws.law_site_names`,
        :func:`~bayescale.model.curve_laws.noise_site_names`).
    correlation
        ``"ar1"`` or ``"none"``.
    offsets
        Whether each curve has its own offset (``Normal(0, tau)``) on log loss, integrated out.
    lr_ref
        The reference LR of ``C_ref = C lr_ref^-gamma``.
    start
        Values of the sampled parameters where the mode search starts; by default the priors'
        centres.
    sizes
        Labels of the model sizes (one for a fit of one size).
    group
        Each checkpoint's size, an index into ``sizes`` (all 0 by default).
    log_size
        Per size, log N less the sizes' mean.
    walk_ref
        With a value, each curve's discrepancy walks
        (:func:`~bayescale.model.curve_walk.walk_log_lik`) in ``log S1`` from this ``log S1`` on
        (:func:`~bayescale.model.curve_walk.walk_time`); ``None``: offsets only.
    """
    check_correlation(correlation)
    walk = walk_ref is not None
    if walk and correlation != "none":
        raise BayescaleError(
            "a random-walk discrepancy takes correlation='none' (the walk is the correlation)"
        )
    setup_jax()
    names = law_site_names(sizes) + noise_site_names(sizes, correlation, offsets, walk)
    sites = []
    for name in names:
        prior = priors[name]
        transform = TRANSFORMS[prior.distribution]
        suffix = f"_{transform}__" if transform else ""
        sites.append(Site(name, f"{name}{suffix}", prior, transform))
    data = {
        **features_dict(features),
        **curve_structure(curve_index),
        "y": np.log(np.asarray(loss, dtype=float)),
        "group": np.zeros(len(loss), dtype=int) if group is None else np.asarray(group, dtype=int),
        "log_size": np.asarray(log_size, dtype=float),
        "log_lr_ref": np.asarray(math.log(lr_ref)),
    }
    if walk_ref is not None:
        data.update(walk_structure(curve_index, walk_time(data["log_s1"], walk_ref)))
    at = None if start is None else tuple(float(_forward(s.prior, s.transform, start[s.name])) for s in sites)
    return CurveDensity(
        MultiPowerLaw(), "normal", tuple(sites), {}, data, correlation, offsets, tuple(sizes), at, walk
    )
