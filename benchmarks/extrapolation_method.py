"""Calibrating extrapolation intervals of a scaling-law fit (issue 16, part 2).

Pure numpy, no bayescale import, so the functions can move into the package as they are.
Everything works on posterior predictive draws of the **log** loss, shape ``(draws, queries)``.

The model (design (a)): a query x* beyond the range of the training runs gets a discrepancy

    log L* = mu(theta, x*) + eps + delta,   delta ~ Normal(0, (tau * d(x*))^2),

where ``mu + eps`` is what the fit already draws (law mean plus run-to-run noise) and ``d`` is
the distance of x* = (N*, D*) beyond the training runs (:func:`distance`, default ``"max"``):

    d = max( (log C*/C_max)_+ , (log N*/N_max)_+ , (log r*/r_max)_+ + (log r_min/r*)_+ ),

C = N D, r = D / N, maxima and minima over the training runs, natural logs, (x)_+ = max(x, 0).
At ``d = 0`` (inside the range) nothing changes. ``tau`` (log-loss scale per e-fold of
distance) is learnt from held-out ladders (:func:`fit_tau`), leave-one-ladder-family-out when
scored.

Chosen (issue 16 study, benchmarks/results/extrapolation.txt): **averaging over a law variant
beyond the runs' range** (:func:`mix_laws`, ``ramp=0``): at a query with d > 0 the predictive
distribution is the equal mixture (``VARIANT_SHARE`` = 1/2) of the fitted law's posterior
predictive draws and those of a second law fitted to the same runs (``VARIANT_LAW`` =
``"kaplan-e"``); at d = 0 the fitted law's draws are returned unchanged. Nothing is learnt
across ladders (the cost is one extra fit per ladder). The discrepancy term above (design (a),
constant ``TAU``) is the fallback without a second fit; it misses the per-protocol floor.

Design (b) estimates ``tau`` from the ladder itself by a rolling-origin backtest
(:func:`fit_tau` on the backtest's residuals); design (c) combines them: :func:`pooled_tau` with
``own=`` (the backtest weighted like all other ladders together) or
:func:`posterior_tau_weights` (the other ladders' taus reweighted by the backtest's likelihood).
"""

from __future__ import annotations

from typing import Any

import numpy as np

#: The chosen method: the variant law, its share of the draws beyond the range, and the ramp
#: (0: a step, the full share at any d > 0). Chosen, not fitted: equal weights of two laws.
VARIANT_LAW = "kaplan-e"
VARIANT_SHARE = 0.5
VARIANT_RAMP = 0.0

#: Default distance (see :func:`distance`).
DISTANCE = "max"

#: tau (sd of log loss per e-fold of distance) fitted on ALL 17 protocols (15 ladders) of
#: benchmarks/extrapolation.py: design (a), distance "max", objective "likelihood" (Gaussian
#: likelihood of held-out residuals, each ladder weighing one in total), cached fits of seed 1
#: at 4 chains x 500 draws after 500 tuning steps; printed as "tau on all ladders" by
#:     python benchmarks/extrapolation.py --from-cache --method discrepancy
#: The benchmark never scores with it: each protocol is scored with tau refitted without its
#: ladder family (0.0048 without the Chinchilla ladder, 0.0133-0.0151 without any other).
TAU = 0.01356

#: Grid over which tau is searched (log-loss per e-fold of distance).
TAU_GRID = np.concatenate([[0.0], np.geomspace(1e-4, 0.5, 400)])

Z90 = 1.6448536269514722  # standard normal 95% quantile: half-width of a central 90% interval


def _pos(x: Any) -> np.ndarray:
    return np.maximum(np.asarray(x, dtype=float), 0.0)


def distance_components(
    train_params: Any, train_tokens: Any, params: Any, tokens: Any
) -> dict[str, np.ndarray]:
    """How far each query lies beyond the training runs, in e-folds (natural log units).

    ``compute``: positive part of log(C*/C_max) with C = N D (the factor 6 cancels);
    ``params``: positive part of log(N*/N_max);
    ``ratio``: how far tokens per parameter D*/N* lies outside the training runs' span
    [min D/N, max D/N] (either side), in log units.
    """
    tn, td = np.log(np.asarray(train_params, float)), np.log(np.asarray(train_tokens, float))
    qn, qd = np.log(np.asarray(params, float)), np.log(np.asarray(tokens, float))
    tr, qr = td - tn, qd - qn
    return {
        "compute": _pos(qn + qd - (tn + td).max()),
        "params": _pos(qn - tn.max()),
        "ratio": _pos(qr - tr.max()) + _pos(tr.min() - qr),
    }


def distance(
    train_params: Any, train_tokens: Any, params: Any, tokens: Any, kind: str = DISTANCE
) -> np.ndarray:
    """Distance of each query beyond the training runs.

    ``kind``: ``"compute"`` = (log C*/C_max)_+; ``"params"`` = (log N*/N_max)_+;
    ``"compute+ratio"`` = (log C*/C_max)_+ + tokens-per-parameter outside the span;
    ``"max"`` = the largest of the three components.
    """
    parts = distance_components(train_params, train_tokens, params, tokens)
    if kind in ("compute", "params", "ratio"):
        return parts[kind]
    if kind == "compute+ratio":
        return parts["compute"] + parts["ratio"]
    if kind == "max":
        return np.maximum.reduce([parts["compute"], parts["params"], parts["ratio"]])
    raise ValueError(f"unknown distance {kind!r}")


def inflate(log_draws: np.ndarray, d: Any, tau: float, rng: np.random.Generator) -> np.ndarray:
    """Draws of log L* with the discrepancy delta ~ Normal(0, (tau d)^2) added (unchanged at d = 0)."""
    log_draws = np.asarray(log_draws, dtype=float)
    d = np.broadcast_to(np.asarray(d, dtype=float), log_draws.shape[-1:])
    return log_draws + tau * d * rng.standard_normal(log_draws.shape)


def calibrate(
    log_draws: np.ndarray,
    train_params: Any,
    train_tokens: Any,
    params: Any,
    tokens: Any,
    tau: float = TAU,
    kind: str = DISTANCE,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """The chosen method in one call: predictive draws of log loss at (params, tokens) with the
    discrepancy Normal(0, (tau d)^2), d = :func:`distance` of each query beyond the training runs."""
    d = distance(train_params, train_tokens, params, tokens, kind)
    return inflate(log_draws, d, tau, np.random.default_rng() if rng is None else rng)


def inflate_mixture(
    log_draws: np.ndarray, d: Any, taus: Any, rng: np.random.Generator, weights: Any = None
) -> np.ndarray:
    """As :func:`inflate` with tau itself uncertain: each posterior draw takes one tau from
    ``taus`` (with ``weights``), e.g. the values fitted on other ladders one by one, so the
    discrepancy is a scale mixture (heavier tails than one pooled tau). Unchanged at d = 0."""
    log_draws = np.asarray(log_draws, dtype=float)
    taus = np.asarray(taus, dtype=float).ravel()
    p = None if weights is None else np.asarray(weights, dtype=float) / np.sum(weights)
    pick = taus[rng.choice(taus.size, size=log_draws.shape[0], p=p)]
    d = np.broadcast_to(np.asarray(d, dtype=float), log_draws.shape[-1:])
    return log_draws + pick[:, None] * d[None, :] * rng.standard_normal(log_draws.shape)


def ladder_taus(
    resid: Any, scale: Any, d: Any, ladder_ids: Any, objective: str = "likelihood"
) -> dict[str, float]:
    """tau fitted on each ladder alone (design (a) with a tau per ladder), by ladder id."""
    ids = np.asarray(ladder_ids)
    r, s, dd = (np.asarray(a, dtype=float).ravel() for a in (resid, scale, d))
    return {
        str(k): fit_tau(r[ids == k], s[ids == k], dd[ids == k], objective=objective) for k in np.unique(ids)
    }


def law_weight(d: Any, ramp: float = 1.0, share: float = 0.5) -> np.ndarray:
    """Weight of the variant law at distance d: 0 inside the runs' range, rising linearly to
    ``share`` at d = ``ramp`` e-folds beyond it (a step at d > 0 when ``ramp`` is 0)."""
    d = np.asarray(d, dtype=float)
    if ramp <= 0:
        return np.where(d > 0, share, 0.0)
    return share * np.minimum(d / ramp, 1.0)


def mix_laws(
    main: np.ndarray,
    variant: np.ndarray,
    d: Any,
    rng: np.random.Generator | None = None,
    ramp: float = VARIANT_RAMP,
    share: float = VARIANT_SHARE,
) -> np.ndarray:
    """Design (c), averaging over law variants: draws of the mixture (1 - w) fitted law + w variant
    law per query, w = :func:`law_weight` (d) <= 1/2. Returned as twice the draws: the fitted law's
    draws, then per query either the variant's (probability 2w) or the fitted law's again. With
    the chosen step (ramp 0, share 1/2) this is exact and needs no random numbers: beyond the
    range all draws of both laws, equally weighted; at d = 0 the fitted law's draws (twice, the
    same distribution), so in-range intervals are unchanged."""
    main, variant = np.asarray(main, dtype=float), np.asarray(variant, dtype=float)
    n = min(main.shape[0], variant.shape[0])
    main, variant = main[:n], variant[:n]
    p = 2 * law_weight(d, ramp, share)
    if np.all((p == 0) | (p == 1)):
        pick = np.broadcast_to(p[None, :] == 1, main.shape)
    else:
        rng = np.random.default_rng() if rng is None else rng
        pick = rng.random(main.shape) < p[None, :]
    return np.concatenate([main, np.where(pick, variant, main)])


def log_likelihood(resid: Any, scale: Any, d: Any, taus: Any) -> np.ndarray:
    """Gaussian log likelihood of residuals r ~ Normal(0, scale^2 + tau^2 d^2), one value per tau."""
    r, s, dd = (np.asarray(a, dtype=float).ravel() for a in (resid, scale, d))
    keep = np.isfinite(r) & np.isfinite(s)
    r, s, dd = r[keep], s[keep], dd[keep]
    var = s[None, :] ** 2 + (np.asarray(taus, dtype=float).ravel()[:, None] * dd[None, :]) ** 2
    return -0.5 * (np.log(2 * np.pi * var) + r[None, :] ** 2 / var).sum(axis=1)


def posterior_tau_weights(prior_taus: Any, backtest: tuple[Any, Any, Any] | None) -> np.ndarray:
    """Design (c): weights over the other ladders' taus (the prior, each ladder 1/K) times the
    likelihood of this ladder's own rolling-origin backtest residuals at that tau. Without a
    backtest the weights stay uniform (plain mixture over ladders)."""
    taus = np.asarray(prior_taus, dtype=float).ravel()
    logw = np.zeros(taus.size)
    if backtest is not None and np.size(backtest[0]):
        logw = logw + log_likelihood(*backtest, taus)
    w = np.exp(logw - logw.max())
    return w / w.sum()


def summary(log_draws: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Median and a robust Gaussian scale (central 90% width / (2 z_0.95)) of each query's draws."""
    q05, q50, q95 = np.quantile(log_draws, [0.05, 0.5, 0.95], axis=0)
    return q50, (q95 - q05) / (2 * Z90)


def fit_tau(
    resid: Any,
    scale: Any,
    d: Any,
    weights: Any = None,
    objective: str = "coverage",
    prob: float = 0.9,
) -> float:
    """tau from held-out residuals r = log L_obs - median, their predictive scales and distances.

    ``objective="likelihood"``: maximise the weighted Gaussian log density of r under
    Normal(0, scale^2 + tau^2 d^2). ``objective="coverage"``: the smallest tau whose
    weighted share of points inside the central ``prob`` interval reaches ``prob``. Only
    points with d > 0 take part (tau cannot move the others). Weights let every ladder
    count once whatever its number of held-out runs.
    """
    r, s, d = (np.asarray(a, dtype=float).ravel() for a in (resid, scale, d))
    w = np.ones_like(r) if weights is None else np.asarray(weights, dtype=float).ravel()
    keep = np.isfinite(r) & np.isfinite(s) & (w > 0) & (d > 0)
    r, s, d, w = r[keep], s[keep], d[keep], w[keep]
    if r.size == 0:
        return 0.0
    var = s[None, :] ** 2 + (TAU_GRID[:, None] * d[None, :]) ** 2
    if objective == "likelihood":
        ll = -0.5 * (np.log(var) + r[None, :] ** 2 / var) @ w
        return float(TAU_GRID[int(np.argmax(ll))])
    if objective == "coverage":
        from statistics import NormalDist

        z = NormalDist().inv_cdf(0.5 + prob / 2)
        inside = (np.abs(r)[None, :] <= z * np.sqrt(var)) @ w / w.sum()
        ok = np.flatnonzero(inside >= prob)
        return float(TAU_GRID[ok[0]] if ok.size else TAU_GRID[-1])
    raise ValueError(f"unknown objective {objective!r}")


def ladder_weights(ladder_ids: Any) -> np.ndarray:
    """Weights that give every ladder a total weight of one."""
    ids = np.asarray(ladder_ids)
    _, inverse, counts = np.unique(ids, return_inverse=True, return_counts=True)
    return 1.0 / counts[inverse]


def pooled_tau(
    resid: Any,
    scale: Any,
    d: Any,
    ladder_ids: Any,
    own: tuple[Any, Any, Any] | None = None,
    prior_weight: float = 1.0,
    objective: str = "coverage",
    prob: float = 0.9,
) -> float:
    """tau from other ladders' held-out points, each ladder weighing one in total (design (a)).

    With ``own = (resid, scale, d)``, the backtest points of the ladder being predicted
    (design (c)), those points together weigh one and the other ladders together weigh
    ``prior_weight``: the cross-ladder fit acts as a prior on the ladder's own estimate.
    """
    w = ladder_weights(ladder_ids)
    r, s, dd = (np.asarray(a, dtype=float).ravel() for a in (resid, scale, d))
    if own is not None:
        orr, os_, od = (np.asarray(a, dtype=float).ravel() for a in own)
        if orr.size:
            w = w / w.sum() * prior_weight
            w = np.concatenate([w, np.full(orr.size, 1.0 / orr.size)])
            r, s, dd = np.concatenate([r, orr]), np.concatenate([s, os_]), np.concatenate([dd, od])
    return fit_tau(r, s, dd, w, objective=objective, prob=prob)
