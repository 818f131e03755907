"""The multi-power law of a loss curve under a learning-rate schedule, its sites and its priors.

Luo et al. (2025) model the loss at step ``t`` of a run as

    L(t) = L0 + A * S1(t)^-alpha + B * LD(t)

with ``S1`` the summed learning rate and ``LD`` the loss-drop sum of the LR decreases so far
(:mod:`bayescale.data.schedule` computes both's inputs once, in numpy). The mean is written once
over numpy / ``jax.numpy`` (:func:`multipower_loss`). Its log posterior on the sampler's
unconstrained scale is :class:`~bayescale.model.curve_density.CurveDensity`; the random-walk
discrepancy of a curve is in :mod:`bayescale.model.curve_walk`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from bayescale.data.schedule import CurveFeatures, loss_drop_cells
from bayescale.model.laws import ops
from bayescale.model.likelihoods import Correlation, ar1_innovations, log_density
from bayescale.model.priors import Prior

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


def per_size(theta: Mapping[str, Any], name: str, sizes: Sequence[str], index: Any, xp: Any) -> Any:
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
    """The multi-power law's parameters at ``index`` (:func:`per_size`) from the sampled ones.

    ``log_size`` is each size's log N less their mean; ``C = C_ref lr_ref^gamma``.
    """
    law = {p: per_size(theta, p, sizes, index, xp) for p in ("L0", "A", "alpha")}
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
    random walk's scale per unit ``log S1`` (:func:`~bayescale.model.curve_walk.walk_log_lik`),
    is HalfNormal(0.005): over the
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
