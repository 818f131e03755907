import numpy as np
import pytest

import bayescale as bs
from bayescale.errors import PriorError
from bayescale.model.priors import Prior, priors_from_json, priors_to_json, read_priors_file
from bayescale.model.pymc_model import resolve_priors


def test_round_trip_dict_and_json():
    prior = Prior("Normal", mu=0.34, sigma=0.05)
    assert Prior.from_dict(prior.to_dict()) == prior
    assert priors_from_json(priors_to_json({"alpha_N": prior})) == {"alpha_N": prior}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("Cauchy",), "unknown prior distribution 'Cauchy'"),
        (("Normal",), r"Normal prior takes arguments \['mu', 'sigma'\]"),
        (("Normal", {"mu": 0, "sigma": -1}), "sigma must be > 0"),
        (("Normal", {"mu": "x", "sigma": 1}), "mu='x' is not a number"),
        (("Uniform", {"lower": 1, "upper": 0}), "lower < upper"),
    ],
)
def test_bad_priors(args, message):
    kwargs = args[1] if len(args) > 1 else {}
    with pytest.raises(PriorError, match=message):
        Prior(args[0], **kwargs)


def test_sample_matches_distribution():
    draws = Prior("LogNormal", mu=-1.0, sigma=0.6).sample(np.random.default_rng(0), 20000)
    assert abs(np.median(np.log(draws)) + 1.0) < 0.02


def test_priors_file_toml_and_json(tmp_path):
    toml = tmp_path / "p.toml"
    toml.write_text('[alpha_N]\ndistribution = "Normal"\nmu = 0.34\nsigma = 0.05\n')
    assert read_priors_file(toml) == {"alpha_N": Prior("Normal", mu=0.34, sigma=0.05)}
    bad = tmp_path / "p.json"
    bad.write_text("{not json")
    with pytest.raises(PriorError, match="not valid json"):
        read_priors_file(bad)


def test_resolve_priors_names_and_fixes():
    law = bs.get_law("chinchilla")
    free, fixed = resolve_priors(
        law, "student_t", {"E": {"distribution": "LogNormal", "mu": 0.6, "sigma": 0.1}}, {"alpha_N": 0.35}
    )
    assert "alpha_N" not in free and fixed == {"alpha_N": 0.35}
    assert free["E"] == Prior("LogNormal", mu=0.6, sigma=0.1)
    with pytest.raises(PriorError, match="'gamma', which is not a parameter"):
        resolve_priors(law, "student_t", {"gamma": Prior("Normal", mu=0, sigma=1)})
    with pytest.raises(PriorError, match="cannot fix 'beta'"):
        resolve_priors(law, "student_t", None, {"beta": 0.3})
    with pytest.raises(PriorError, match="fixed value for 'E' must be > 0"):
        resolve_priors(law, "student_t", None, {"E": -1})
    with pytest.raises(PriorError, match="'nu', which is not a parameter"):
        resolve_priors(law, "normal", {"nu": Prior("Gamma", alpha=2, beta=0.1)})


def test_prior_predictive_covers_observed_losses():
    runs = bs.datasets.load("chinchilla")
    draws = bs.prior_predictive("chinchilla", runs, draws=2000, random_seed=0)
    assert draws["loss"].dims == ("chain", "draw", "run")
    assert draws.sizes == {"chain": 1, "draw": 2000, "run": 245}
    # Weakly informative: the observed losses sit well inside the prior predictive range.
    lower = draws["loss_predictive"].quantile(0.05, dim=("chain", "draw"))
    upper = draws["loss_predictive"].quantile(0.95, dim=("chain", "draw"))
    observed = runs.column("loss")
    assert np.mean((lower.values < observed) & (observed < upper.values)) > 0.95
    # Fixed parameters stay fixed and seeds reproduce.
    fixed = bs.prior_predictive("chinchilla", runs, fix={"E": 1.7}, draws=10, random_seed=1)
    assert np.all(fixed["E"].values == 1.7)
    again = bs.prior_predictive("chinchilla", runs, fix={"E": 1.7}, draws=10, random_seed=1)
    assert fixed.equals(again)


#: PyTensor keeps some of a distribution's arguments as float32 constants (2.7e-9 relative seen).
RTOL = 1e-7
#: PyMC's log mass of a one-sided truncated normal's tail is off by ~2e-7 (a constant: no effect
#: on sampling); Prior.log_density computes it with log_ndtr on the accurate side.
ATOL = 1e-6

#: One prior of every supported distribution (TruncatedNormal bounded on both sides, one side,
#: and with its mean outside), each with points inside its support.
LOG_DENSITY_CASES = [
    (Prior("Normal", mu=0.35, sigma=0.1), [-0.2, 0.35, 1.4]),
    (Prior("LogNormal", mu=0.5, sigma=0.5), [0.01, 1.6, 30.0]),
    (Prior("HalfNormal", sigma=2.0), [1e-4, 1.0, 9.0]),
    (Prior("TruncatedNormal", mu=0.3, sigma=0.2, lower=0.01, upper=1.5), [0.02, 0.3, 1.4]),
    (Prior("TruncatedNormal", mu=-1.0, sigma=0.5, lower=0.0), [0.01, 0.5, 3.0]),
    (Prior("TruncatedNormal", mu=2.0, sigma=1.0, upper=1.0), [-3.0, 0.0, 0.99]),
    (Prior("StudentT", nu=4.0, mu=0.3, sigma=0.2), [-2.0, 0.3, 5.0]),
    (Prior("HalfStudentT", nu=3.0, sigma=0.1), [1e-3, 0.1, 4.0]),
    (Prior("Gamma", alpha=3.0, beta=8.0), [0.01, 0.4, 3.0]),
    (Prior("Exponential", lam=2.0), [1e-3, 0.5, 6.0]),
    (Prior("Uniform", lower=0.1, upper=3.0), [0.11, 1.0, 2.9]),
    (Prior("Beta", alpha=2.0, beta=5.0), [1e-3, 0.3, 0.99]),
]


def test_log_density_cases_cover_every_distribution():
    from bayescale.model.priors import SUPPORTED_DISTRIBUTIONS, TRANSFORMS

    assert {p.distribution for p, _ in LOG_DENSITY_CASES} == set(SUPPORTED_DISTRIBUTIONS) == set(TRANSFORMS)


@pytest.mark.parametrize(
    "case", range(len(LOG_DENSITY_CASES)), ids=lambda i: LOG_DENSITY_CASES[i][0].describe()
)
def test_log_density_written_once_matches_pymc_on_every_backend(case):
    """Prior.log_density over numpy, JAX and PyTensor equals PyMC's logp of the same distribution."""
    import pymc as pm
    import pytensor
    import pytensor.tensor as pt

    from bayescale.model.jax_backend import setup_jax
    from bayescale.model.laws import ops

    prior, points = LOG_DENSITY_CASES[case]
    x = np.asarray(points)
    expected = pm.logp(getattr(pm, prior.distribution).dist(**prior.kwargs), x).eval()
    np.testing.assert_allclose(prior.log_density(x, ops.NUMPY), expected, rtol=RTOL, atol=ATOL)
    if (x > 0).all():  # the log of x given by a caller that samples on the log scale
        np.testing.assert_allclose(prior.log_density(x, ops.NUMPY, np.log(x)), expected, rtol=RTOL, atol=ATOL)
    setup_jax()
    import jax.numpy as jnp

    jax_value = np.asarray(prior.log_density(jnp.asarray(x), ops.jax()))
    np.testing.assert_allclose(jax_value, expected, rtol=RTOL, atol=ATOL)
    v = pt.dvector("x")
    tensor_value = pytensor.function([v], prior.log_density(v, ops.tensor()))(x)
    np.testing.assert_allclose(tensor_value, expected, rtol=RTOL, atol=ATOL)


def test_create_variable_passes_its_keywords_to_pymc():
    import pymc as pm

    with pm.Model(coords={"budget": ["a", "b", "c"]}) as model:
        Prior("Normal", mu=0.0, sigma=1.0).create_variable("v", dims="budget")
    assert model.named_vars_to_dims["v"] == ("budget",)
    assert model.initial_point()["v"].shape == (3,)


def test_override_priors_checks_names_and_positive_parameters():
    from bayescale.model.priors import override_priors

    defaults = {"a": Prior("Normal", mu=0.5, sigma=0.3), "tau": Prior("HalfNormal", sigma=0.3)}
    merged = override_priors(defaults, {"a": {"distribution": "Normal", "mu": 0.2, "sigma": 0.1}}, ("tau",))
    assert merged == {"a": Prior("Normal", mu=0.2, sigma=0.1), "tau": defaults["tau"]}
    assert override_priors(defaults, None) == defaults
    with pytest.raises(PriorError, match=r"'b', not a parameter of this model; parameters: \['a', 'tau'\]"):
        override_priors(defaults, {"b": Prior("Normal", mu=0, sigma=1)})
    with pytest.raises(PriorError, match="prior of 'tau' must be on positive values"):
        override_priors(defaults, {"tau": Prior("Normal", mu=0, sigma=1)}, ("tau",))
    with pytest.raises(PriorError, match="the prior of 'z' cannot be given: standard normal"):
        override_priors(
            defaults, {"z": Prior("Normal", mu=0, sigma=1)}, not_overridable={"z": "standard normal"}
        )


@pytest.mark.parametrize(
    ("prior", "expected"),
    [
        (Prior("Normal", mu=0, sigma=1), (-np.inf, np.inf)),
        (Prior("Gamma", alpha=2, beta=1), (0.0, np.inf)),
        (Prior("Beta", alpha=2, beta=2), (0.0, 1.0)),
        (Prior("Uniform", lower=0.2, upper=0.9), (0.2, 0.9)),
        (Prior("TruncatedNormal", mu=0, sigma=1, lower=0), (0.0, np.inf)),
    ],
)
def test_support(prior, expected):
    from bayescale.model.priors import support

    assert support(prior) == expected
