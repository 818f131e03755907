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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from bayescale.data.schedule import CurveFeatures, loss_drop_cells
from bayescale.errors import BayescaleError
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

    ``theta``'s values are scalars, arrays of shape ``(..., 1)`` against checkpoints ``(n,)``, or
    (``L0``, ``A``, ``alpha``, ``B``) one value per checkpoint.
    """
    p = {k: xp.asarray(theta[k]) for k in MULTIPOWER_PARAMETERS}
    drop = loss_drop_cells(features, p["C"], p["beta"], p["gamma"], xp)
    return p["L0"] + p["A"] * xp.exp(-p["alpha"] * features["log_s1"]) + p["B"] * drop


def features_dict(features: CurveFeatures) -> dict[str, np.ndarray]:
    """:class:`CurveFeatures` as the dict :func:`multipower_loss` reads: its non-empty cells."""
    return features.cells()


#: Parameters each model size has its own of, in a fit of several sizes: the law's level and
#: S1 power law, and the noise. ``B`` follows a power of N; ``C``, ``beta``, ``gamma`` are shared.
PER_SIZE = ("L0", "A", "alpha", "sigma")


def size_name(name: str, size: str) -> str:
    """The site of parameter ``name`` of model size ``size`` in a fit of several sizes."""
    return f"{name}[{size}]"


def law_site_names(sizes: Sequence[str]) -> list[str]:
    """The law's sampled parameters (``C`` as ``C_ref``): per size when there are several sizes.

    With several sizes, ``B`` is ``B N'^B_slope`` (``N'`` a size's N over the sizes' geometric
    mean): ``B`` scales the loss drop of a decay, which the anchors show growing slowly with N,
    so a size fitted without a decay (a constant LR only) still has one.
    """
    several = len(sizes) > 1
    names = []
    for p in ("L0", "A", "alpha"):
        names += [size_name(p, s) for s in sizes] if several else [p]
    return [*names, "B", *(["B_slope"] if several else []), "C_ref", "beta", "gamma"]


def noise_site_names(
    sizes: Sequence[str], correlation: Correlation, offsets: bool, walk: bool = False
) -> list[str]:
    """The noise model's sampled parameters: ``sigma`` (per size), ``rho``, ``tau``, ``kappa``.

    ``rho`` with AR(1) residuals, ``tau`` with offsets, ``kappa`` with the random walk.
    """
    sigmas = [size_name("sigma", s) for s in sizes] if len(sizes) > 1 else ["sigma"]
    return [
        *sigmas,
        *(["rho"] if correlation == "ar1" else []),
        *(["tau"] if offsets else []),
        *(["kappa"] if walk else []),
    ]


def _per_size(theta: Mapping[str, Any], name: str, sizes: Sequence[str], index: Any, xp: Any) -> Any:
    """Parameter ``name`` at ``index``: an int (one size) or each checkpoint's size (an array)."""
    if len(sizes) <= 1:
        return theta[name]
    if isinstance(index, int | np.integer):
        return theta[size_name(name, sizes[int(index)])]
    # a sum of one-hot terms broadcasts draws ``(..., 1)`` against checkpoints ``(n,)``
    return sum(theta[size_name(name, s)] * (index == i) for i, s in enumerate(sizes))


def law_parameters(
    theta: Mapping[str, Any], sizes: Sequence[str], index: Any, log_size: Any, log_lr_ref: Any, xp: Any = np
) -> dict[str, Any]:
    """The multi-power law's parameters at ``index`` (:func:`_per_size`) from the sampled ones.

    ``log_size`` is each size's log N less their mean; ``C = C_ref lr_ref^gamma``.
    """
    law = {p: _per_size(theta, p, sizes, index, xp) for p in ("L0", "A", "alpha")}
    law["B"] = theta["B"]
    if len(sizes) > 1:
        law["B"] = law["B"] * xp.exp(theta["B_slope"] * xp.asarray(log_size)[index])
    law["C"] = theta["C_ref"] * xp.exp(theta["gamma"] * log_lr_ref)
    law["beta"], law["gamma"] = theta["beta"], theta["gamma"]
    return law


def offset_terms(
    resid: Any, sigma: Any, rho: Any, data: Mapping[str, Any], correlation: Correlation, xp: Any = np
) -> tuple[Any, Any, Any]:
    """The noise's log density of ``resid`` and, per curve, ``1' S^-1 1`` and ``1' S^-1 r``.

    ``S`` is the noise covariance of one curve (independent, or AR(1) along it). Per-curve offsets
    ``o ~ Normal(0, tau)`` on log loss integrate out in closed form:
    ``log N(r; 0, S + tau^2 11') = log N(r; 0, S) - log(1 + tau^2 a) / 2 + b^2 / (2 (1/tau^2 + a))``
    with ``a = 1' S^-1 1`` and ``b = 1' S^-1 r``, and given a draw of the rest a curve's offset is
    ``Normal(b / (1/tau^2 + a), (1/tau^2 + a)^-1/2)``. Both come from the AR(1) innovations of
    ``r`` and of a vector of ones. ``resid`` and ``sigma`` have the checkpoints on their last axis
    (draws before it in numpy); ``data`` holds ``first``, ``prev`` and ``member`` (curves x
    checkpoints, 1 where a checkpoint belongs to a curve).
    """
    space = ops.NUMPY if xp is np else ops.jax()
    ones = xp.ones_like(resid)
    if correlation == "ar1":
        first = data["first"] > 0
        innov, scale = ar1_innovations(resid, resid[..., data["prev"]], first, rho, sigma, space)
        unit, _ = ar1_innovations(ones, ones, first, rho, sigma, space)
    else:
        innov, scale, unit = resid, sigma * ones, ones
    log_lik = xp.sum(log_density("normal", innov / scale, scale, None, space), axis=-1)
    member = xp.asarray(data["member"]).T
    a = (unit / scale) ** 2 @ member
    b = (unit * innov / scale**2) @ member
    return log_lik, a, b


def walk_time(log_s1: Any, log_s1_ref: float) -> np.ndarray:
    """The time of the random walk along a curve: ``log S1`` past the fit's reference, from 0.

    ``log_s1_ref`` is the lowest ``log S1`` of the fitted checkpoints, so every curve's walk
    starts at the same time; checkpoints before it (less LR summed) get time 0.
    """
    return np.maximum(np.asarray(log_s1, dtype=float) - log_s1_ref, 0.0)


def walk_structure(curve_index: np.ndarray, time: np.ndarray) -> dict[str, np.ndarray]:
    """Checkpoints of curves stacked contiguously as a padded ``curves x longest`` layout.

    ``pad`` holds checkpoint indices (a short curve repeats its last one), ``pad_mask`` 1 where
    a position is a checkpoint, ``pad_dt`` the walk's time since the previous checkpoint of the
    curve (since 0 at the first; 0 at padding).
    """
    curve_index = np.asarray(curve_index)
    counts = np.bincount(curve_index)
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    position = np.arange(int(counts.max()))
    pad = starts[:, None] + np.minimum(position[None, :], counts[:, None] - 1)
    mask = (position[None, :] < counts[:, None]).astype(float)
    padded = np.asarray(time, dtype=float)[pad]
    dt = np.diff(padded, axis=1, prepend=0.0)
    return {"pad": pad, "pad_mask": mask, "pad_dt": dt}


def _kalman_step(carry: tuple[Any, Any, Any], x: tuple[Any, Any, Any, Any], kappa2: Any, xp: Any) -> Any:
    """One checkpoint of every curve: predict the walk's level, then update it on the residual."""
    mean, var, total = carry
    r, noise2, dt, on = x
    var = var + kappa2 * dt
    spread = var + noise2
    v = r - mean
    total = total + on * -0.5 * (xp.log(2 * math.pi * spread) + v**2 / spread)
    gain = on * var / spread
    return (mean + gain * v, var - gain * var, total)


def walk_log_lik(resid: Any, sigma: Any, tau: Any, kappa: Any, data: Mapping[str, Any], xp: Any = np) -> Any:
    """Log density of the residuals, each curve's being a level that walks plus independent noise.

    A curve's residuals on log loss are ``d(t) + e`` with ``e ~ Normal(0, sigma)`` and ``d`` its
    discrepancy from the law: ``d(0) ~ Normal(0, tau)`` (the curve's offset) and a Gaussian
    random walk from there, ``Var(d(t) - d(s)) = kappa^2 (t - s)`` in the walk's time
    (:func:`walk_time`, ``log S1``). So a curve's covariance is
    ``sigma^2 I + tau^2 11' + kappa^2 min(t_i, t_j)``: with ``kappa = 0`` this is the offsets'
    model (:func:`offset_terms`), and a run under a new schedule is uncertain by more the further
    along its curve. The level is integrated out exactly by a Kalman filter run over the padded
    layout (:func:`walk_structure`), all curves at once: ``lax.scan`` in JAX, a loop over
    positions in numpy (where ``resid`` and ``sigma`` may carry draws before the checkpoints'
    axis, and ``tau``, ``kappa`` shape ``(..., 1)``).
    """
    pad, mask, dt = data["pad"], xp.asarray(data["pad_mask"]), xp.asarray(data["pad_dt"])
    r = xp.take(resid, pad, axis=-1)
    noise2 = xp.take(xp.broadcast_to(sigma, xp.shape(resid)) ** 2, pad, axis=-1)
    kappa2 = xp.asarray(kappa) ** 2
    zero = xp.zeros(r.shape[:-1])
    carry = (zero, zero + xp.asarray(tau) ** 2, zero)
    if xp is np:
        for j in range(pad.shape[1]):
            carry = _kalman_step(carry, (r[..., j], noise2[..., j], dt[:, j], mask[:, j]), kappa2, np)
    else:
        from jax import lax

        def step(c: Any, x: Any) -> Any:
            return _kalman_step(c, x, kappa2, xp), None

        xs = (xp.moveaxis(r, -1, 0), xp.moveaxis(noise2, -1, 0), dt.T, mask.T)
        carry, _ = lax.scan(step, carry, xs)
    return xp.sum(carry[2], axis=-1)


def walk_kernel(s: np.ndarray, t: np.ndarray, tau: Any, kappa: Any) -> np.ndarray:
    """Covariance of a curve's discrepancy at walk times ``s`` and ``t``: ``tau^2 + kappa^2 min(s, t)``.

    ``tau`` and ``kappa`` are per draw, shape ``(draws,)``; the result is ``(draws, len(s), len(t))``.
    """
    low = np.minimum(np.asarray(s)[:, None], np.asarray(t)[None, :])
    return np.asarray(tau)[:, None, None] ** 2 + np.asarray(kappa)[:, None, None] ** 2 * low


def walk_paths(time: np.ndarray, tau: np.ndarray, kappa: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Draws of a new curve's discrepancy at walk times ``time`` (any order): ``(draws, len(time))``.

    One offset per draw (``Normal(0, tau)``) and a random walk of variance ``kappa^2`` per unit
    time from time 0 (cumulated in time order).
    """
    time = np.asarray(time, dtype=float)
    order = np.argsort(time, kind="stable")
    steps = np.diff(time[order], prepend=0.0)
    increments = rng.standard_normal((len(tau), len(time))) * np.sqrt(steps) * np.asarray(kappa)[:, None]
    path = np.empty_like(increments)
    path[:, order] = np.cumsum(increments, axis=1)
    return path + rng.standard_normal((len(tau), 1)) * np.asarray(tau)[:, None]


def walk_given(
    resid: np.ndarray,
    known: np.ndarray,
    new: np.ndarray,
    tau: np.ndarray,
    kappa: np.ndarray,
    sigma: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Draws of one curve's discrepancy at walk times ``new`` given its residuals at ``known``.

    Per draw (``resid`` is ``(draws, n)``; ``tau``, ``kappa``, ``sigma`` ``(draws,)``), an exact
    draw from the Gaussian conditional by Matheron's rule: a joint prior draw at ``known`` and
    ``new`` (:func:`walk_paths`) plus noise at ``known``, moved by the conditional's gain
    ``k(new, known) (K + sigma^2 I)^-1`` on the residuals' difference from it. No Cholesky of
    the ``new`` block, so many new times cost little.
    """
    n = len(known)
    joint = walk_paths(np.r_[known, new], tau, kappa, rng)
    noise = rng.standard_normal(resid.shape) * sigma[:, None]
    cov = walk_kernel(known, known, tau, kappa) + sigma[:, None, None] ** 2 * np.eye(n)
    gain = np.linalg.solve(cov, (resid - joint[:, :n] - noise)[..., None])[..., 0]
    return joint[:, n:] + np.einsum("dsn,dn->ds", walk_kernel(new, known, tau, kappa), gain)


def default_priors(lr_ref: float, loss_min: float) -> dict[str, Prior]:
    """Weakly informative priors, scaled by the data's peak LR and lowest loss.

    ``B`` multiplies LR changes: its prior centre is ``0.1 / lr_ref`` (a full decay from the peak
    lowering the loss by ~0.1 nats), a factor ~e^2 either way per sd. ``L0`` sits below the
    lowest loss. The loss-drop shape ``G = 1 - (1 + C eta^-gamma s)^-beta`` is not identified by
    a few curves: ``C``, ``beta`` and ``gamma`` trade off along a ridge. Fitted to the three
    training curves of one size under wide priors, ``gamma`` went to 1.2-2.8 with ``C`` at
    1e-11-1e-3 (Luo et al.: 0.64 and 2.1), which fits the training curves better than the
    published values (Huber 1.4e-4 against 2.9e-4 at 25M) and extrapolates worse (the long cosine
    and two-stage test curves: 0.3-0.7% off against 0.13-0.28%); under a log sd of 0.3 on
    ``beta`` and ``gamma`` the same happened, and with the noise AR(1) (rho 0.99) the S1 term
    drifted instead. With more schedules the data settle it themselves: all nine 25M curves give
    ``gamma`` 0.62 [0.54, 0.70]. So the priors say what the shape is across sizes and schedules:
    ``beta`` and ``gamma`` ~0.6 with a log sd of 0.15 (a factor 1.35 either way at 2 sd; Luo et
    al.'s three sizes spread by 3%), and ``C`` ~2 with a log sd of 0.5. Data of many schedules
    override them. ``C`` is sampled as ``C_ref = C lr_ref^-gamma``, the scale of ``G``'s argument
    at the peak LR (``C`` and ``gamma`` trade off along ``log C - gamma log eta``, a curved ridge
    in ``(log C, log gamma)`` that ``C_ref`` straightens); its prior is what the priors on ``C``
    and ``gamma`` imply for it. ``tau`` is the sd of a curve's offset on log loss: how far a run
    under a new schedule sits off the law. A few curves, one per schedule, cannot measure it:
    under a half-normal prior the 100M fit put it at 5e-5 [5e-6, 8e-4] (the law, bent, fits its
    three curves' levels) and no test curve's final point fell inside its band. Its prior,
    LogNormal(log 0.002, 0.5) (90% in [0.09%, 0.45%]), is the law's error on unseen schedules as
    Luo et al. report it (mean 0.11-0.17% over 25M-400M, worst checkpoints 0.4-1%).
    ``B_slope`` (several sizes) is the power of N in ``B``, Normal(0, 0.5). ``kappa``, the
    random walk's scale per unit ``log S1`` (:func:`walk_log_lik`), is HalfNormal(0.005): over the
    ~3 units of ``log S1`` a curve spans, at most a few tenths of a percent of drift, and the
    many checkpoints of each curve measure it.
    """
    log_c_ref = math.log(2.0) - 0.6 * math.log(lr_ref)
    return {
        "L0": Prior("LogNormal", mu=math.log(0.8 * loss_min), sigma=0.5),
        "A": Prior("LogNormal", mu=math.log(0.5), sigma=1.5),
        "alpha": Prior("LogNormal", mu=math.log(0.5), sigma=0.7),
        "B": Prior("LogNormal", mu=math.log(0.1 / lr_ref), sigma=2.0),
        "B_slope": Prior("Normal", mu=0.0, sigma=0.5),
        "C_ref": Prior("LogNormal", mu=log_c_ref, sigma=math.hypot(0.5, 0.6 * 0.15 * math.log(lr_ref))),
        "beta": Prior("LogNormal", mu=math.log(0.6), sigma=0.15),
        "gamma": Prior("LogNormal", mu=math.log(0.6), sigma=0.15),
        "sigma": Prior("HalfNormal", sigma=0.02),
        "rho": Prior("Beta", alpha=2.0, beta=2.0),
        "tau": Prior("LogNormal", mu=math.log(0.002), sigma=0.5),
        "kappa": Prior("HalfNormal", sigma=0.005),
    }


@dataclass(frozen=True)
class CurveDensity:
    """Log posterior of the multi-power law on curves, in the interface of the fast path's Density.

    ``data`` holds the features (:func:`features_dict`), the log losses ``y``, ``group`` (each
    checkpoint's model size, an index into :attr:`sizes`), ``log_size`` (per size, log N less
    their mean), ``member`` (curves x checkpoints), ``first`` (1.0 at each curve's first
    checkpoint), ``prev`` (the index of the previous checkpoint of the same curve) and
    ``log_lr_ref`` (``C = C_ref lr_ref^gamma``). With :attr:`offsets`, each curve's log losses sit
    an offset ``o_i ~ Normal(0, tau)`` off the law, integrated out in closed form
    (:func:`offset_terms`): no per-curve coordinate, so no funnel between ``tau`` and the
    offsets (centred, the chains of a 100M fit split between ``tau`` ~1e-4 and ~3e-3).
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
        sigma = _per_size(theta, "sigma", self.sizes, group, jnp)
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
        A prior for each sampled parameter (:func:`law_site_names`, :func:`noise_site_names`).
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
        With a value, each curve's discrepancy walks (:func:`walk_log_lik`) in ``log S1`` from
        this ``log S1`` on (:func:`walk_time`); ``None``: offsets only.
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
