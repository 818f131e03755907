"""The likelihoods written once (bayescale.model.likelihoods) agree with PyMC's distributions."""

import numpy as np
import pytest

from bayescale.errors import BayescaleError, LawError
from bayescale.model.laws import ops
from bayescale.model.likelihoods import (
    CORRELATIONS,
    LIKELIHOODS,
    ar1_innovations,
    check_correlation,
    check_likelihood,
    log_density,
    pymc_noise,
    total_log_density,
)

Y = np.array([0.61, 0.72, 0.93, 1.4, 2.2])
MU = np.array([0.6, 0.75, 0.9, 1.1, 1.5])
SIGMA, NU = 0.07, 3.5


@pytest.mark.parametrize("likelihood", LIKELIHOODS)
def test_log_density_matches_pymc_on_every_namespace(likelihood):
    import pymc as pm
    import pytensor
    import pytensor.tensor as pt

    from bayescale.model.jax_backend import setup_jax

    # (PyTensor keeps some arguments of PyMC's distribution as float32 constants: rtol 1e-7)
    expected = pm.logp(pymc_noise(likelihood, MU, SIGMA, NU), Y).eval()
    z = (Y - MU) / SIGMA
    value = log_density(likelihood, z, SIGMA, NU, ops.NUMPY)
    np.testing.assert_allclose(value, expected, rtol=1e-7)
    np.testing.assert_allclose(
        total_log_density(likelihood, z, SIGMA, NU, ops.NUMPY), value.sum(), rtol=1e-12
    )
    setup_jax()
    import jax.numpy as jnp

    total = total_log_density(likelihood, jnp.asarray(z), SIGMA, NU, ops.jax())
    np.testing.assert_allclose(float(total), value.sum(), rtol=1e-12)
    v = pt.dvector("z")
    # numpy float64 scales: PyTensor makes a Python float a float32 constant (see build_model)
    scales = np.float64(SIGMA), np.float64(NU)
    tensor_value = pytensor.function([v], log_density(likelihood, v, *scales, ops.tensor()))(z)
    np.testing.assert_allclose(tensor_value, value, rtol=1e-12)


def test_unknown_likelihood_is_named():
    with pytest.raises(LawError, match=r"unknown likelihood 'laplace'; use one of \['student_t', 'normal'\]"):
        log_density("laplace", np.zeros(2), 1.0, None, ops.NUMPY)
    with pytest.raises(LawError, match="unknown likelihood 'laplace'"):
        pymc_noise("laplace", 0.0, 1.0)


def test_names_are_narrowed_to_their_literal_types_or_refused():
    # The tuples are read off the Literal types, so the names users may pass are declared once.
    assert LIKELIHOODS == ("student_t", "normal") and CORRELATIONS == ("ar1", "none")
    assert [check_likelihood(name) for name in LIKELIHOODS] == list(LIKELIHOODS)
    assert [check_correlation(name) for name in CORRELATIONS] == list(CORRELATIONS)
    with pytest.raises(LawError, match=r"unknown likelihood 'Normal'; use one of \['student_t', 'normal'\]"):
        check_likelihood("Normal")
    with pytest.raises(BayescaleError, match=r"unknown correlation 'ma1'; use one of \['ar1', 'none'\]"):
        check_correlation("ma1")


#: Two AR(1) series laid end to end (4 and 3 checkpoints), with each value's predecessor.
RESID = np.array([0.03, -0.01, 0.05, 0.02, -0.04, -0.06, 0.01])
FIRST = np.array([True, False, False, False, True, False, False])
PREV = np.where(FIRST, 0, np.arange(len(RESID)) - 1)
RHO = 0.7


def _ar1_log_density(resid, prev, ops_):
    # (numpy float64 scales: PyTensor would make Python floats float32 constants)
    innov, scale = ar1_innovations(resid, prev, FIRST, np.float64(RHO), np.float64(SIGMA), ops_)
    return log_density("normal", innov / scale, scale, None, ops_).sum()


def test_ar1_innovations_give_the_multivariate_normal_density():
    from scipy.stats import multivariate_normal

    def series_logpdf(x):
        # AR(1) covariance: sigma^2 rho^|i - j| / (1 - rho^2)
        lag = np.abs(np.subtract.outer(np.arange(len(x)), np.arange(len(x))))
        return multivariate_normal(np.zeros(len(x)), SIGMA**2 * RHO**lag / (1 - RHO**2)).logpdf(x)

    expected = series_logpdf(RESID[:4]) + series_logpdf(RESID[4:])
    value = _ar1_log_density(RESID, RESID[PREV], ops.NUMPY)
    np.testing.assert_allclose(value, expected, rtol=1e-12)
    # the value before a series' first is not used
    np.testing.assert_allclose(_ar1_log_density(RESID, np.where(FIRST, 9.0, RESID[PREV]), ops.NUMPY), value)
    # with rho = 0 the innovations are the residuals, each of scale sigma
    innov, scale = ar1_innovations(RESID, RESID[PREV], FIRST, 0.0, SIGMA, ops.NUMPY)
    np.testing.assert_array_equal(innov, RESID)
    np.testing.assert_array_equal(scale, np.full(len(RESID), SIGMA))


def test_ar1_innovations_agree_on_every_namespace():
    import pytensor
    import pytensor.tensor as pt

    from bayescale.model.jax_backend import setup_jax

    expected = _ar1_log_density(RESID, RESID[PREV], ops.NUMPY)
    setup_jax()
    import jax.numpy as jnp

    resid = jnp.asarray(RESID)
    np.testing.assert_allclose(float(_ar1_log_density(resid, resid[PREV], ops.jax())), expected, rtol=1e-12)
    v = pt.dvector("resid")
    tensor_value = pytensor.function([v], _ar1_log_density(v, v[PREV], ops.tensor()))(RESID)
    np.testing.assert_allclose(tensor_value, expected, rtol=1e-12)
