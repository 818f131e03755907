"""Loss curves under learning-rate schedules: the multi-power law fitted in a Bayesian way.

:func:`fit_curves` fits the multi-power law (Luo et al. 2025,
:mod:`bayescale.model.curve_laws`) to the checkpoints of runs of one model size, each with its LR
schedule, and :meth:`CurvesFit.predict` gives the loss along a new schedule with intervals. The
schedule features are computed once in numpy (:mod:`bayescale.data.schedule`); the density is
compiled in JAX and sampled by the project's NUTS driver with its diagnostics. Residuals of one
curve are an AR(1) series by default: successive checkpoints share the run's history.

The fit's result is :class:`~bayescale.methods.curves_result.CurvesFit`; where it starts (a prior
per site, the least-squares fit, the whitened density) is :mod:`bayescale.methods.curves_start`,
with :func:`~bayescale.methods.curves_start.fit_curves_least_squares`, the point fit of the same
law the way Luo et al. fit it (Huber loss, delta 1e-3, on log loss), for comparison.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd

from bayescale.data.prepared_curves import ScheduleLike, prepare_curves, thinned
from bayescale.data.schedule import BINS
from bayescale.errors import BayescaleError
from bayescale.inference import diagnostics as diag
from bayescale.inference.sampling import (
    SAMPLER_DEFAULTS,
    SamplerSettings,
    resolve_sampler,
    sample_density,
    scalar_view,
)
from bayescale.methods.curves_result import CurvesFit
from bayescale.methods.curves_start import least_squares_start, site_priors, whitened_at_mode
from bayescale.model.curve_density import build_curve_density
from bayescale.model.curve_laws import features_dict, law_parameters, multipower_loss, noise_site_names
from bayescale.model.likelihoods import Correlation, check_correlation
from bayescale.model.priors import Prior

#: Checkpoints per curve in the likelihood by default (:func:`~bayescale.data.prepared_curves.thinned`).
MAX_POINTS = 100


def fit_curves(
    curves: pd.DataFrame,
    schedules: Mapping[str, ScheduleLike],
    *,
    correlation: Correlation = "none",
    offsets: bool = True,
    walk: bool = False,
    max_points: int | None = MAX_POINTS,
    priors: Mapping[str, Prior] | None = None,
    bins: int = BINS,
    starts: int = 4,
    sampler: SamplerSettings | None = None,
    random_seed: int | None = None,
    progressbar: bool = False,
    warn: bool = True,
) -> CurvesFit:
    """Fit the multi-power law to loss curves, each under its LR schedule, of one or several sizes.

    Parameters
    ----------
    curves
        One row per checkpoint: ``run``, ``step`` (0-based optimiser step), ``loss``; optionally
        ``params`` (N of the run). With several N, one fit covers all sizes: each size has its
        own ``L0``, ``A``, ``alpha`` and ``sigma``, ``B`` is a power of N, and ``C``, ``beta``,
        ``gamma`` and ``tau`` are shared (:func:`~bayescale.model.curve_laws.law_site_names`).
    schedules
        For each run, a :class:`~bayescale.Schedule` or the LR at every step ``0 .. T-1``.
    correlation
        ``"none"`` (default): independent noise around each curve's level; ``"ar1"``: the
        residuals of one curve are an AR(1) series.
    offsets
        Each curve's level is offset from the law by ``o_i ~ Normal(0, tau)`` on log loss
        (default), integrated out; a new run's offset is drawn from ``Normal(0, tau)`` in
        :meth:`CurvesFit.predict`.
    walk
        Each curve's discrepancy from the law walks along the curve from its offset: a Gaussian
        random walk in ``log S1`` of scale ``kappa``, integrated out
        (:func:`~bayescale.model.curve_laws.walk_log_lik`). A run under a new schedule is then
        more uncertain the further along its curve. Takes ``correlation="none"``.
    max_points
        Checkpoints of each curve in the likelihood at most
        (:func:`~bayescale.data.prepared_curves.thinned`; ``None``: all).
    priors
        Priors replacing :func:`~bayescale.model.curve_laws.default_priors`, by name (``L0``
        for every size, or ``L0[<size>]`` for one).
    bins
        Bins per checkpoint of the loss-drop sum (:func:`~bayescale.data.schedule.curve_features`).
    starts
        Starts of the least-squares fit the posterior mode is searched from.
    sampler, random_seed, progressbar
        Sampler settings (see :func:`bayescale.fit`), seed, progress messages.
    warn
        Emit a :class:`~bayescale.inference.diagnostics.FitWarning` when diagnostics fail.

    Returns
    -------
    CurvesFit

    Examples
    --------
    >>> sched = {"a": bs.Schedule(3e-4, 24000, 2160, "cosine")}  # doctest: +SKIP
    >>> fit = bs.fit_curves(frame, sched)  # doctest: +SKIP
    >>> fit.predict(bs.Schedule(3e-4, 72000, 2160, "cosine"), steps=[71999])  # doctest: +SKIP
    """
    check_correlation(correlation)
    if walk and correlation != "none":
        raise BayescaleError("walk=True takes correlation='none': the walk is the correlation along a curve")
    data = prepare_curves(thinned(curves, max_points), schedules, bins)
    merged = site_priors(data, priors or {}, correlation, offsets, walk)
    # The mode search starts from the least-squares fit: from the priors' centre BFGS stops on the
    # law's ridges (B, C, beta, gamma trade off) and NUTS on the original coordinates crawls.
    start = least_squares_start(data, merged, starts, random_seed or 0)
    law = law_parameters(start, data.sizes, data.group, data.log_size, math.log(data.lr_ref))
    resid = np.log(data.frame["loss"].to_numpy()) - np.log(
        multipower_loss(law, features_dict(data.features), np)
    )
    levels = np.bincount(data.curve_index, weights=resid) / np.bincount(data.curve_index)
    if offsets:
        start["tau"] = max(float(np.sqrt(np.mean(levels**2))), 1e-4)
        resid = resid - levels[data.curve_index]
    same = data.curve_index[1:] == data.curve_index[:-1]
    rho = float(np.clip(np.corrcoef(resid[1:][same], resid[:-1][same])[0, 1], 0.05, 0.95))
    start["rho"] = rho
    for i, name in enumerate(noise_site_names(data.sizes, "none", False)):
        spread = float(np.std(resid[data.group == i]))
        start[name] = spread * math.sqrt(1 - rho**2 if correlation == "ar1" else 1.0)
    if walk:
        # a walk half the noise's size over the curves' span of log S1 (the mode search moves it)
        span = float(np.ptp(np.log(data.features.s1))) or 1.0
        start["kappa"] = 0.5 * float(np.std(resid)) / math.sqrt(span)
    density = build_curve_density(
        data.features,
        data.frame["loss"].to_numpy(),
        data.curve_index,
        merged,
        correlation,
        offsets,
        data.lr_ref,
        start,
        data.sizes,
        data.group,
        data.log_size,
        data.log_s1_ref if walk else None,
    )
    density = whitened_at_mode(density)
    config = resolve_sampler(SAMPLER_DEFAULTS, sampler)
    if config.backend not in ("auto", "jax"):
        raise BayescaleError(
            f"fit_curves samples the JAX density only; backend {config.backend!r} is not available"
        )
    idata = sample_density(density, config, random_seed, progressbar)
    names = [s.name for s in density.sites]
    view, flat = scalar_view(idata, names)
    report = diag.compute(view, flat)
    if warn:
        diag.warn_if_failed(report)
    return CurvesFit(idata, data, merged, correlation, offsets, report, config, walk, random_seed)
