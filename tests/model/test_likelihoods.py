"""The likelihoods written once (bayescale.model.likelihoods) agree with PyMC's distributions."""

import numpy as np
import pytest

from bayescale.errors import LawError
from bayescale.model.laws import ops
from bayescale.model.likelihoods import LIKELIHOODS, log_density, pymc_noise, total_log_density

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
