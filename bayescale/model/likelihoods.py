"""The noise models on log loss (Student-t, Normal), written once over an ops namespace.

Every method's residuals of log loss follow one of :data:`LIKELIHOODS`. Their log density is
written here once, over an ops namespace (:mod:`~bayescale.model.laws.ops`): the JAX density
sums it (:func:`total_log_density`), the numpy post-processing of draws (LOO, extrapolation
scores, the design of the next run) evaluates it per run (:func:`log_density`). The PyMC models
observe the same family through :func:`pymc_noise`, PyMC's own distribution of it, so that
PyMC keeps its observed variable (posterior predictive draws, pointwise log likelihood);
``tests/model/test_likelihoods.py`` checks the two agree.

Residuals of one training run, checkpoint after checkpoint, share its history: the curve
methods model them as an AR(1) series, whose innovations are independent draws of the noise
model (:func:`ar1_innovations`).
"""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any, Literal, get_args

from bayescale.errors import BayescaleError, LawError

#: The name of a noise model of log loss.
Likelihood = Literal["student_t", "normal"]
#: The name of a residual structure along a training curve: AR(1) within a run, or independent.
Correlation = Literal["ar1", "none"]

#: Noise models of log loss, by name.
LIKELIHOODS: tuple[Likelihood, ...] = get_args(Likelihood)
#: Residual structures along a curve, by name.
CORRELATIONS: tuple[Correlation, ...] = get_args(Correlation)

_LOG_2PI = math.log(2 * math.pi)


def check_likelihood(likelihood: str) -> Likelihood:
    """``likelihood`` as a :data:`Likelihood`; a LawError for an unknown name (users pass strings)."""
    for name in LIKELIHOODS:
        if likelihood == name:
            return name
    raise LawError(f"unknown likelihood {likelihood!r}; use one of {list(LIKELIHOODS)}")


def check_correlation(correlation: str) -> Correlation:
    """``correlation`` as a :data:`Correlation`; a BayescaleError for an unknown name."""
    for name in CORRELATIONS:
        if correlation == name:
            return name
    raise BayescaleError(f"unknown correlation {correlation!r}; use one of {list(CORRELATIONS)}")


def _terms(likelihood: Likelihood, z: Any, sigma: Any, nu: Any, ops: SimpleNamespace) -> tuple[Any, Any, Any]:
    """``const``, ``weight`` and ``kernel`` with log density ``const - weight * kernel`` per value."""
    if likelihood == "student_t":
        const = ops.gammaln((nu + 1) / 2) - ops.gammaln(nu / 2) - 0.5 * ops.log(math.pi * nu) - ops.log(sigma)
        return const, (nu + 1) / 2, ops.log1p(z * z / nu)
    check_likelihood(likelihood)
    return -0.5 * _LOG_2PI - ops.log(sigma), 0.5, z * z


def log_density(likelihood: Likelihood, z: Any, sigma: Any, nu: Any, ops: SimpleNamespace) -> Any:
    """Log density of each residual of log loss, elementwise (broadcasting like ``ops``' arrays).

    Parameters
    ----------
    likelihood
        ``"student_t"`` or ``"normal"``.
    z
        Standardised residuals ``(log loss - mean) / sigma``.
    sigma, nu
        Scale and (Student-t) degrees of freedom; ``nu`` is ignored by the normal.
    ops
        The namespace of the arrays: ``ops.NUMPY`` (also xarray), ``ops.jax()``, ``ops.tensor()``.
    """
    const, weight, kernel = _terms(likelihood, z, sigma, nu, ops)
    return const - weight * kernel


def total_log_density(
    likelihood: Likelihood, z: Any, sigma: Any, nu: Any, ops: SimpleNamespace, mask: Any = None
) -> Any:
    """:func:`log_density` summed over the values of ``z`` (one scale), the constant added once.

    With ``mask`` (1 for a value, 0 for padding, like ``z``), the sum over the values where it is 1.
    """
    const, weight, kernel = _terms(likelihood, z, sigma, nu, ops)
    if mask is None:
        return z.shape[0] * const - weight * ops.sum(kernel)
    return ops.sum(mask) * const - weight * ops.sum(mask * kernel)


def ar1_innovations(
    resid: Any, prev: Any, first: Any, rho: Any, sigma: Any, ops: SimpleNamespace
) -> tuple[Any, Any]:
    """Innovations of residuals that are AR(1) within each series, and the scale of each.

    Given ``rho`` and ``sigma`` the innovations are independent, each with its scale, so the
    log density of the residuals is the noise model's log density of the innovations (the map
    from residuals to innovations is triangular with unit diagonal: no Jacobian term). A
    series' first value has the stationary scale ``sigma / sqrt(1 - rho^2)``.

    Parameters
    ----------
    resid
        Residuals of log loss, each series in checkpoint order.
    prev
        The residual at the previous checkpoint of the same series, aligned with ``resid``
        (any finite value where ``first``: it is not used there).
    first
        Whether each value is the first of its series (boolean, broadcasting against ``resid``).
    rho, sigma
        Autocorrelation (``|rho| < 1``) and the scale of an innovation.
    ops
        The namespace of the arrays: ``ops.NUMPY``, ``ops.jax()``, ``ops.tensor()``.

    Returns
    -------
    innov, scale
        ``resid``, less ``rho * prev`` after a series' first value, and the scale of each
        (broadcasting like ``first`` against ``sigma``).
    """
    innov = ops.where(first, resid, resid - rho * prev)
    scale = ops.where(first, sigma / ops.sqrt(1.0 - rho**2), sigma)
    return innov, scale


def pymc_noise(
    likelihood: Likelihood, mu: Any, sigma: Any, nu: Any = None, name: str | None = None, **kwargs: Any
) -> Any:
    """PyMC's distribution of the likelihood: a variable ``name`` of the model, or an unnamed ``.dist``.

    ``kwargs`` go to PyMC (``observed=``, ``dims=``).
    """
    import pymc as pm

    check_likelihood(likelihood)
    args = {"nu": nu, "mu": mu, "sigma": sigma} if likelihood == "student_t" else {"mu": mu, "sigma": sigma}
    family = pm.StudentT if likelihood == "student_t" else pm.Normal
    return family.dist(**args, **kwargs) if name is None else family(name, **args, **kwargs)
