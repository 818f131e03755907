"""Array operations a law's mean, a prior and a likelihood are written against, for numpy, PyTensor and JAX.

A law writes its log-space mean once, calling ``ops.exp``, ``ops.log``, ...
(and so do :meth:`~bayescale.model.priors.Prior.log_density` and
:mod:`~bayescale.model.likelihoods`);
the PyMC model passes :func:`tensor`, the JAX log density passes :func:`jax`
and the post-processing of draws passes :data:`NUMPY` (which also works on
xarray objects, broadcasting by dim name).
"""

from __future__ import annotations

import functools
from types import SimpleNamespace
from typing import Any

import numpy as np


def _tensor_ops() -> SimpleNamespace:
    import pytensor.tensor as pt

    return SimpleNamespace(
        exp=pt.exp,
        log=pt.log,
        log1p=pt.log1p,
        sqrt=pt.sqrt,
        expm1=pt.expm1,
        maximum=pt.maximum,
        minimum=pt.minimum,
        where=pt.switch,
        gammaln=pt.gammaln,
        sum=pt.sum,
        is_tensor=True,
    )


def _gammaln(x: Any) -> Any:
    from scipy.special import gammaln  # (imported when first needed: scipy is slow to import)

    return gammaln(x)


NUMPY = SimpleNamespace(
    exp=np.exp,
    log=np.log,
    log1p=np.log1p,
    sqrt=np.sqrt,
    expm1=np.expm1,
    maximum=np.maximum,
    minimum=np.minimum,
    where=np.where,
    gammaln=_gammaln,
    sum=np.sum,
    is_tensor=False,
)


def _jax_ops() -> SimpleNamespace:
    import jax.numpy as jnp
    from jax.scipy.special import gammaln

    return SimpleNamespace(
        exp=jnp.exp,
        log=jnp.log,
        log1p=jnp.log1p,
        sqrt=jnp.sqrt,
        expm1=jnp.expm1,
        maximum=jnp.maximum,
        minimum=jnp.minimum,
        where=jnp.where,
        gammaln=gammaln,
        sum=jnp.sum,
        is_tensor=True,
    )


@functools.cache
def jax() -> SimpleNamespace:
    """The JAX namespace (imported lazily: only the fast sampler needs it)."""
    return _jax_ops()


@functools.cache
def tensor() -> SimpleNamespace:
    """The PyTensor namespace (imported lazily: pytensor is slow to import)."""
    return _tensor_ops()


def logsumexp(terms: list[Any], ops: SimpleNamespace) -> Any:
    """Numerically stable ``log(sum(exp(t) for t in terms))``, elementwise.

    Written with elementwise operations only, so it broadcasts the same way
    for numpy arrays, xarray objects and PyTensor tensors.
    """
    top = functools.reduce(ops.maximum, terms)
    return top + ops.log(sum(ops.exp(t - top) for t in terms))
