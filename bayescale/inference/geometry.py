"""Sampler coordinates in which a weakly identified law is a straight, not a curved, ridge.

On a ladder that pins the loss curve but not its curvature (the (Mis)Fitting
best-LR ladder: 81 runs), the posterior of the irreducible loss ``E`` and the
exponent ``alpha_N`` is a banana: given ``alpha_N``, ``log E`` has a standard
deviation of 0.03 in the middle of the ridge and 0.3 at its low-``alpha_N``
end, and the ridge bends (seen: step size 0.0075, 511 leapfrog steps per
draw, 2% of draws at the maximum tree depth; with ``E`` or ``alpha_N`` held
fixed, step size 0.35 and 7-15 steps). A dense mass matrix only undoes linear
correlation.

The data pin two things a law's parameters mix: the level of the loss at the
runs' reference point, ``L_ref = E + sum_k t_k`` (``t_k = A_k x_ref^-alpha_k``,
the term of each centred amplitude there, ``exp`` of the density's
``A_log_at_ref`` coordinate), and how far each term rises from the reference
down to the smallest runs, ``drop_k = t_k (exp(alpha_k l_k) - 1)`` (``l_k`` the
distance of the reference above the smallest log covariate). Along the ridge
only the exponents move, with ``E = L_ref - sum_k drop_k / (exp(alpha_k l_k) - 1)``.
So NUTS samples ``log L_ref`` in place of ``log E``, ``log drop_k`` in place of
each ``log t_k``, and in place of each ``log alpha_k`` a coordinate that is
``log alpha_k`` well above ``alpha_k,min`` and ``log(alpha_k - alpha_k,min)``
(scaled) near it, where ``alpha_k,min`` is the exponent at which the term
would leave nothing of the level to ``E`` and the terms placed before it: every
point of the new coordinates has ``E > 0`` (a wall at ``E = 0`` in the first
version of this map gave divergences), and ``E -> 0`` is a smooth tail. Every
other coordinate is the density's own. The map is a bijection onto the
density's support with ``log |J| = log L_ref - log E + sum_k log(d log alpha_k / d kappa_k)``,
added to the log density: the posterior is the same, only the coordinates
differ (``tests/inference/test_geometry.py`` checks the Jacobian against JAX's
and the posterior against the one sampled on the density's own coordinates).

A term whose covariate does not vary over the runs (every run trained on the same D, as
the Gemstones final checkpoints) has no drop: the data pin only ``E + t_k``, a curved ridge
in ``(log E, log t_k)`` along which the priors alone decide (seen: 65% of draws at the maximum
tree depth, r_hat 1.58). Such a term takes a share ``s`` of what the level leaves, sampled
as ``logit s``: ``t_k = R s`` and ``E = R (1 - s)``, a map of unit Jacobian in
``(log R, logit s)``, so the data pin ``R`` and the share runs along a straight line.

Two drop terms whose covariates move together over the runs (every run at one ratio of
tokens to parameters: ``log D - log N`` the same for all) have drops the runs pin only as a
sum: in ``(log drop_1, log drop_2)`` the ridge ``drop_1 + drop_2 = const`` bends by 90 degrees
(seen on 8 runs at 20 tokens per parameter: the Laplace step's Gaussian fell by 104-134
instead of 2 at two sds along it, so the sampler was not whitened and took 127 leapfrog steps
per draw). Such a pair is sampled as ``log(drop_1 + drop_2)`` and ``logit`` of the first's
share, again a unit-Jacobian map, straight along the ridge.

:func:`reparametrise` wraps a :class:`~bayescale.model.jax_density.Density`
when the law has this form (a free ``E`` on the log scale and centred amplitudes:
a drop term needs its exponent on the log scale too, a share does not) and returns
it unchanged otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from bayescale.model.likelihoods import Likelihood

#: How sharply each exponent's coordinate turns from ``log alpha`` (well above its bound) to
#: ``log(alpha - alpha_min) * SHARPNESS`` (near it, where E -> 0): at 1, the whole ridge of the
#: (Mis)Fitting ladder sat in the second regime, whose long tail (log E's prior, sd 0.75) cut the
#: step size to 0.06-0.1 (31-63 steps per draw); at 4 the tail's scale (0.75 / 4) matches the
#: ridge's (sd of log alpha_N ~0.19).
_SHARPNESS = 4.0
#: A covariate spanning less than this (in log units, ~1%) gives no drop to measure.
_MIN_SPAN = 1e-2
#: Two drop terms whose log covariates' difference spans less than this share of the smaller
#: covariate's span move together: their drops are pooled. A quarter is where the runs' tokens per
#: parameter span 2.5x on a 50x ladder of sizes, the data layer's threshold for warning that
#: the exponents cannot be told apart (``bayescale.data.columns.MIN_RATIO_SPREAD``).
_POOLED_SPAN = 0.25


@dataclass(frozen=True)
class Term:
    """One centred amplitude: its coordinate and its exponent's.

    Attributes
    ----------
    amplitude, exponent
        Indices of the amplitude's centred coordinate and of its exponent's (log scale).
    """

    amplitude: int
    exponent: int


@dataclass(frozen=True)
class LevelAndDrops:
    """A density sampled on (log level, log drops, exponents above their bounds).

    Duck-types the :class:`~bayescale.model.jax_density.Density` interface the
    sampler reads (``logp``, ``logp_unchunked``, ``initial_point``,
    ``constrain``, ``size``, ``sites``, ``data``, ...); positions are in the new
    coordinates, in the density's order: the level in ``E``'s place, each
    term's log drop in its amplitude's and ``log(alpha - alpha_min)`` in its
    exponent's. ``below`` holds, per term, ``ref - min`` of its log covariate
    over the runs (``> 0``): it depends on the runs, so it is data
    (``data["below"]``), not a constant of the compiled programs. ``shares``
    holds the centred amplitudes whose covariate does not vary: each takes
    ``logit`` of its share of what the terms before it leave, in its
    amplitude's place. ``pooled`` names two of ``terms`` (their indices) whose covariates
    move together: the first's amplitude coordinate holds the log of their summed drops, the
    second's ``logit`` of the first's share of it.
    """

    density: Any
    level: int
    terms: tuple[Term, ...]
    below: tuple[float, ...]
    shares: tuple[int, ...] = ()
    pooled: tuple[int, int] | None = None

    @property
    def law(self) -> Any:
        """The density's law."""
        return self.density.law

    @property
    def likelihood(self) -> Likelihood:
        """The density's likelihood."""
        return self.density.likelihood

    @property
    def sites(self) -> tuple[Any, ...]:
        """The density's sites (same order as the coordinates)."""
        return tuple(self.density.sites)

    @property
    def fixed(self) -> dict[str, float]:
        """The density's fixed values."""
        return dict(self.density.fixed)

    @property
    def data(self) -> Any:
        """The density's data, and ``below``."""
        return {**self.density.data, "below": np.asarray(self.below)}

    @property
    def observations(self) -> int:
        """The density's number of runs."""
        return int(self.density.observations)

    @property
    def size(self) -> int:
        """Number of coordinates."""
        return int(self.density.size)

    @property
    def value_names(self) -> list[str]:
        """The density's names of its coordinates."""
        return list(self.density.value_names)

    @property
    def geometry(self) -> tuple[Any, ...]:
        """What the map bakes into a compiled program (part of its cache key)."""
        return ("level-and-drops", self.level, self.terms, self.shares, self.pooled)

    def to_density(self, w: Any, xp: Any = np, below: Any = None) -> tuple[Any, Any]:
        """The density's coordinates at ``w`` and ``log |J|`` of the map.

        ``w`` has the coordinates on its last axis; ``xp`` is numpy or ``jax.numpy``;
        ``below`` is :attr:`below` (or ``data["below"]`` of a compiled program's argument).
        Each term in turn takes its share of what the level leaves (``R``, at
        first ``L_ref``): its exponent is ``alpha_min exp(softplus(4 (kappa - log alpha_min)) / 4)``, with
        ``alpha_min`` the exponent at which the term at the reference point
        would take all of ``R``, so every ``w`` gives ``E > 0``.
        """
        below = self.below if below is None else below
        columns = [w[..., i] for i in range(self.size)]
        drops = [w[..., t.amplitude] for t in self.terms]
        if self.pooled is not None:
            # (log T, logit s) -> (log T + log s, log T + log(1 - s)): unit Jacobian.
            first, second = self.pooled
            log_total, share = drops[first], drops[second]
            drops[first] = log_total - xp.logaddexp(0.0, -share)
            drops[second] = log_total - xp.logaddexp(0.0, share)
        log_level = w[..., self.level]
        log_rest = log_level  # log R: the level less the terms placed so far
        log_jac = log_level
        for k, t in enumerate(self.terms):
            reach = below[k]
            drop, kappa = drops[k], w[..., t.exponent]
            # t_ref (exp(alpha l) - 1) = drop and t_ref < R  <=>  alpha > log1p(drop / R) / l.
            log_floor = xp.log(xp.logaddexp(0.0, drop - log_rest)) - xp.log(reach)
            # log alpha = log alpha_min + softplus(SHARPNESS (kappa - log alpha_min)) / SHARPNESS
            x = _SHARPNESS * (kappa - log_floor)
            above = xp.logaddexp(0.0, x) / _SHARPNESS  # log alpha - log alpha_min, precise when tiny
            floor = xp.exp(log_floor)
            rise = floor * xp.exp(above) * reach  # alpha l
            # What the term leaves of R, 1 - t_ref / R, without the cancellation of R - t_ref:
            # exp(alpha_min l) expm1((alpha - alpha_min) l) / expm1(alpha l).
            left = floor * reach + _log_expm1(floor * xp.expm1(above) * reach, xp) - _log_expm1(rise, xp)
            log_term = drop - _log_expm1(rise, xp)
            log_rest = log_rest + left
            log_jac = log_jac - xp.logaddexp(0.0, -x)  # d log alpha / d kappa = sigmoid(x)
            columns[t.exponent], columns[t.amplitude] = log_floor + above, log_term
        log_jac = log_jac - log_rest  # log L_ref - log R: the level and drops to (R, the terms)
        for j in self.shares:
            # (log R, logit s) -> (log R + log(1 - s), log R + log s): unit Jacobian.
            columns[j] = log_rest - xp.logaddexp(0.0, -w[..., j])
            log_rest = log_rest - xp.logaddexp(0.0, w[..., j])
        columns[self.level] = log_rest  # what the terms leave of the level is E
        return xp.stack(columns, axis=-1), log_jac

    def from_density(self, position: np.ndarray) -> np.ndarray:
        """The inverse map, with numpy: new coordinates of a density position (last axis)."""
        position = np.asarray(position, dtype=float)
        w = position.copy()
        log_rest = position[..., self.level]
        for j in reversed(self.shares):
            w[..., j] = position[..., j] - log_rest  # logit s = log t - log(R (1 - s))
            log_rest = np.logaddexp(log_rest, position[..., j])
        rests = [log_rest]  # log R after each term, from the last back to the first
        for t in reversed(self.terms):
            rests.append(np.logaddexp(rests[-1], position[..., t.amplitude]))
        w[..., self.level] = rests[-1]
        for t, reach, log_rest in zip(self.terms, self.below, reversed(rests[1:]), strict=True):
            log_alpha, log_term = position[..., t.exponent], position[..., t.amplitude]
            rise = np.exp(log_alpha) * reach
            drop = log_term + rise + np.log(-np.expm1(-rise))
            log_floor = np.log(np.logaddexp(0.0, drop - log_rest)) - np.log(reach)
            w[..., t.amplitude] = drop
            y = _SHARPNESS * (log_alpha - log_floor)  # softplus(x) = y  <=>  x = y + log(-expm1(-y))
            w[..., t.exponent] = log_floor + (y + np.log(-np.expm1(-y))) / _SHARPNESS
        if self.pooled is not None:
            first, second = (self.terms[k].amplitude for k in self.pooled)
            w[..., first], w[..., second] = (
                np.logaddexp(w[..., first], w[..., second]),
                w[..., first] - w[..., second],
            )
        return w

    def logp(self, w: Any, data: Any) -> Any:
        """Log density at ``w`` (JAX), Jacobian included."""
        import jax.numpy as jnp

        position, log_jac = self.to_density(w, jnp, data["below"])
        return _nan_to_zero_density(self.density.logp(position, data) + log_jac)

    def logp_unchunked(self, w: Any, data: Any) -> Any:
        """:meth:`logp` through the density's unchunked likelihood (forward-mode differentiable)."""
        import jax.numpy as jnp

        position, log_jac = self.to_density(w, jnp, data["below"])
        return _nan_to_zero_density(self.density.logp_unchunked(position, data) + log_jac)

    def initial_point(self) -> np.ndarray:
        """The density's central point, in the new coordinates."""
        return self.from_density(np.asarray(self.density.initial_point(), dtype=float))

    def constrain(self, w: Any, xp: Any = np) -> dict[str, Any]:
        """Parameter values at ``w`` (see the density's ``constrain``)."""
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            position, _ = self.to_density(w, xp)
        return dict(self.density.constrain(position, xp))


def _nan_to_zero_density(value: Any) -> Any:
    """``-inf`` where the log density is NaN: E underflowed to 0 (``kappa`` far below its bound)."""
    import jax.numpy as jnp

    return jnp.where(jnp.isnan(value), -jnp.inf, value)


def _log_expm1(y: Any, xp: Any) -> Any:
    """``log(expm1(y))`` for ``y > 0``, without overflow for large ``y`` or loss for tiny ``y``."""
    return y + xp.log(-xp.expm1(-y))


def reparametrise(density: Any) -> Any:
    """``density`` as :class:`LevelAndDrops` when its law has a level and drops to sample, else itself.

    Needs a free ``E`` on the log scale (the default priors, and ``--priors-from``) and a
    centred amplitude: a drop term when its covariate spans the runs and its exponent is free
    on the log scale, a share of the level when the covariate does not vary. Laws
    whose mean is not ``E`` plus the centred terms (the data-constrained law
    with repeated epochs) still get a valid map: only how well it straightens
    the ridge depends on the form. The first two drop terms whose covariates move
    together (:data:`_POOLED_SPAN`) have their drops pooled.
    """
    index = {s.name: i for i, s in enumerate(density.sites)}
    level = index.get("E")
    if level is None or density.sites[level].transform != "log":
        return density
    terms, reaches, shares, covariates = [], [], [], []
    for i, s in enumerate(density.sites):
        covariate = _covariate(density, i) if s.transform == "centered" else None
        if covariate is None:
            continue
        below = float(density.data["ref"][s.name]) - float(np.min(covariate))
        if below < _MIN_SPAN:
            shares.append(i)  # no drop to measure: the term's share of the level
        elif s.exponent in index and density.sites[index[s.exponent]].transform == "log":
            terms.append(Term(i, index[s.exponent]))
            reaches.append(below)
            covariates.append(covariate)
    if not terms and not shares:
        return density
    pooled = _moving_together(covariates)
    return LevelAndDrops(density, level, tuple(terms), tuple(reaches), tuple(shares), pooled)


def _moving_together(covariates: list[np.ndarray]) -> tuple[int, int] | None:
    """The first pair of log covariates whose difference barely varies over the runs, or ``None``."""
    spans = [float(np.ptp(c)) for c in covariates]
    for j in range(len(covariates)):
        for k in range(j + 1, len(covariates)):
            if np.ptp(covariates[k] - covariates[j]) < _POOLED_SPAN * min(spans[j], spans[k]):
                return j, k
    return None


def _covariate(density: Any, site: int) -> np.ndarray | None:
    """The log covariate of a centred amplitude over the runs (the padding left out)."""
    name = density.sites[site].name
    runs = np.asarray(density.data["mask"]) > 0
    for c in density.law.centerings:
        if c.amplitude == name:
            return np.asarray(density.data["x"][c.covariate])[runs]
    return None
