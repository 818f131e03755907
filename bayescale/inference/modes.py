"""How much posterior mass each of several separate modes holds, by importance sampling.

NUTS chains that settle in separate modes never cross between them, so the
share of chains in a mode says nothing of its mass: on the all-free
data-constrained fit of ``datablations`` one chain of four found the mode
holding ~96% of the mass. Each mode's mass ``Z_m`` (the integral of the
unnormalised density over it) is estimated by importance sampling from a
multivariate Student-t fitted to its chains' draws, widened so that its tails
cover the mode's: ``Z_m ~ mean(p(x) / q(x))`` over draws ``x ~ q``. The modes
are far apart (chains did not cross), so each proposal's draws fall in its own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy.special import gammaln, logsumexp

#: Draws of each mode's importance-sampling proposal.
PROPOSAL_DRAWS = 4000
#: Degrees of freedom of the proposal, and how much its covariance widens the chains' own.
PROPOSAL_DF = 5.0
PROPOSAL_WIDEN = 1.5
#: Below this effective sample size of the importance weights an estimate is not trusted.
MIN_IMPORTANCE_ESS = 100.0


@dataclass(frozen=True)
class ModeMass:
    """One mode's chains and the share of the posterior mass it holds.

    Attributes
    ----------
    chains
        Indices of the chains that sampled the mode.
    log_mass
        Log of the estimated integral of the unnormalised density over the mode.
    share
        ``exp(log_mass)`` over the sum of every mode's.
    importance_ess
        Effective sample size of the importance weights (of :data:`PROPOSAL_DRAWS`).
    """

    chains: tuple[int, ...]
    log_mass: float
    share: float
    importance_ess: float

    def to_dict(self) -> dict[str, object]:
        """Plain values, as a saved fit stores them."""
        return {
            "chains": list(self.chains),
            "share": self.share,
            "log_mass": self.log_mass,
            "importance_ess": self.importance_ess,
        }


def mode_groups(positions: np.ndarray, separate: Callable[[np.ndarray], list[list[int]]]) -> list[list[int]]:
    """Chains that no coordinate separates, grouped; ``[]`` when all share one mode.

    Parameters
    ----------
    positions
        Draws with dims ``(chain, draw, coordinate)``.
    separate
        ``(chain, draw) draws -> groups of chains`` for one coordinate
        (:func:`bayescale.inference.diagnostics.separate_modes`).
    """
    keys: list[tuple[int, ...]] = [() for _ in range(positions.shape[0])]
    for j in range(positions.shape[2]):
        for k, group in enumerate(separate(positions[:, :, j])):
            # Two chains share a mode only if every coordinate puts them in one group.
            for chain in group:
                keys[chain] += (k,)
    groups: dict[tuple[int, ...], list[int]] = {}
    for chain, key in enumerate(keys):
        groups.setdefault(key, []).append(chain)
    return list(groups.values()) if len(groups) > 1 else []


def mode_masses(
    log_density: Callable[[np.ndarray], np.ndarray],
    positions: np.ndarray,
    groups: Sequence[Sequence[int]],
    rng: np.random.Generator,
) -> list[ModeMass] | None:
    """Each mode's share of the posterior mass, or ``None`` when an estimate is not trusted.

    Parameters
    ----------
    log_density
        ``points (n, d) -> unnormalised log density (n,)`` on the coordinates of ``positions``.
    positions
        Draws with dims ``(chain, draw, coordinate)``.
    groups
        The chains of each mode (:func:`mode_groups`).
    rng
        Source of the proposals' draws.
    """
    estimates = []
    for group in groups:
        draws = positions[list(group)].reshape(-1, positions.shape[2])
        mean = draws.mean(axis=0)
        try:
            root = np.linalg.cholesky(np.cov(draws.T) * PROPOSAL_WIDEN)
        except np.linalg.LinAlgError:
            return None
        points, log_q = _student_t(mean, root, rng)
        log_p = np.asarray(log_density(points), dtype=float)
        log_w = np.where(np.isfinite(log_p), log_p - log_q, -np.inf)
        total = logsumexp(log_w)
        if not np.isfinite(total):
            return None
        weights = np.exp(log_w - total)
        log_mass = float(total - np.log(len(points)))
        estimates.append((tuple(int(c) for c in group), log_mass, float(1 / np.sum(weights**2))))
    if min(ess for _, _, ess in estimates) < MIN_IMPORTANCE_ESS:
        return None
    log_total = logsumexp([log_mass for _, log_mass, _ in estimates])
    return [
        ModeMass(chains, log_mass, float(np.exp(log_mass - log_total)), float(ess))
        for chains, log_mass, ess in estimates
    ]


def _student_t(mean: np.ndarray, root: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """:data:`PROPOSAL_DRAWS` draws of a multivariate Student-t and their log densities."""
    d, df = len(mean), PROPOSAL_DF
    z = rng.standard_normal((PROPOSAL_DRAWS, d))
    scale = np.sqrt(rng.chisquare(df, PROPOSAL_DRAWS) / df)
    points = mean + (z @ root.T) / scale[:, None]
    m = np.sum(np.linalg.solve(root, (points - mean).T) ** 2, axis=0)
    log_q = (
        gammaln((df + d) / 2)
        - gammaln(df / 2)
        - d / 2 * np.log(df * np.pi)
        - np.sum(np.log(np.diag(root)))
        - (df + d) / 2 * np.log1p(m / df)
    )
    return points, log_q
