"""The Laplace step: the posterior mode, the whitening root there, whether the posterior is near Gaussian."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from bayescale.inference.programs import _cached_program, _structure


def _near_gaussian(
    density: Any, data: Any, mode: np.ndarray, root: np.ndarray, reach: float = 2.0, factor: float = 2.0
) -> bool:
    """Whether the log density falls like its Laplace approximation ``reach`` sds out along each axis.

    The Gaussian predicts a fall of ``reach**2 / 2 = 2``; each of the ``2 d``
    falls must be within ``factor`` of it. NUTS gains from whitened
    coordinates when the posterior is close to Gaussian (many runs), but on
    a small, weakly identified ladder (a banana the curvature at the mode
    misjudges) warm-up from the mode mixed worse than the PyMC default of
    original coordinates and starts jittered around the priors' centre. The
    measured falls behind ``factor`` are in docs/measurements.md ("The fast
    path's choices").
    """
    points = np.vstack([mode, mode + reach * np.concatenate([root.T, -root.T])])
    values = np.asarray(_logp_batch(density, points, data)(points, data))
    falls = values[0] - values[1:]
    expected = reach**2 / 2
    return bool(
        np.all(np.isfinite(falls)) and np.all((falls > expected / factor) & (falls < expected * factor))
    )


def _logp_batch(density: Any, points: np.ndarray, data: Any) -> Any:
    """The program ``(points, data) -> log density at each row of points``, through the cache."""
    import jax

    return _cached_program(
        _structure(density), "logp_batch", lambda: jax.vmap(density.logp, in_axes=(0, None)), (points, data)
    )


def mode_and_root(
    value_and_grad: Callable[[np.ndarray], tuple[Any, Any]],
    hessian: Callable[[np.ndarray], Any],
    start: np.ndarray,
    methods: Sequence[str] = ("BFGS",),
) -> tuple[np.ndarray, np.ndarray] | None:
    """Posterior mode and the whitening root ``L`` (``L L^T`` the inverse Hessian there), or ``None``.

    Minimises the negative log density from ``start`` with scipy, each of
    ``methods`` in turn (``"trust-ncg"`` uses ``hessian``) until one ends at
    a finite point where the Hessian is positive definite.

    Parameters
    ----------
    value_and_grad
        ``x -> (-log p(x), its gradient)``.
    hessian
        ``x -> the Hessian of -log p at x``: the exact one (BFGS's running
        estimate is poor in weakly identified directions).
    start
        Where the search starts.
    methods
        ``scipy.optimize.minimize`` methods to try in order.

    Returns
    -------
    (mode, root) or None
        ``None`` when every search fails or its Hessian is not positive
        definite (a mode on a ridge).
    """
    from scipy.optimize import minimize

    def objective(x: np.ndarray) -> tuple[float, np.ndarray]:
        value, grad = value_and_grad(x)
        value, grad = float(value), np.asarray(grad)
        # a step into overflow is a step to reject: +inf makes the line search or trust region shrink
        if np.isfinite(value) and np.all(np.isfinite(grad)):
            return value, grad
        return np.inf, np.zeros_like(x)

    def curvature(x: np.ndarray) -> np.ndarray:
        h = np.asarray(hessian(x))
        return h if np.all(np.isfinite(h)) else np.eye(len(x))  # at a rejected point: unused

    for method in methods:
        with np.errstate(all="ignore"):
            result = minimize(
                objective, start, jac=True, hess=None if method == "BFGS" else curvature, method=method
            )
        if not (np.all(np.isfinite(result.x)) and np.isfinite(result.fun)):
            continue
        try:
            # L = chol(H^-1) computed as inv(chol(H))^T: H^-1 = (C C^T)^-1 = C^-T C^-1.
            root = np.linalg.inv(np.linalg.cholesky(np.asarray(hessian(result.x)))).T
        except np.linalg.LinAlgError:
            continue
        if np.all(np.isfinite(root)):
            return result.x, root
    return None


def _laplace(
    density: Any, data: Any, start: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray] | None:
    """:func:`mode_and_root` of ``density`` by BFGS from ``start`` (the priors' centre), or ``None``."""
    import jax

    def neg_logp(x: Any, data: Any) -> Any:
        return -density.logp(x, data)

    def neg_logp_unchunked(x: Any, data: Any) -> Any:
        return -density.logp_unchunked(x, data)

    args = (np.asarray(density.initial_point() if start is None else start, dtype=float), data)
    structure = _structure(density)
    value_and_grad = _cached_program(structure, "value_and_grad", lambda: jax.value_and_grad(neg_logp), args)
    hessian = _cached_program(structure, "hessian", lambda: jax.hessian(neg_logp_unchunked), args)
    return mode_and_root(lambda x: value_and_grad(x, data), lambda x: hessian(x, data), args[0])
