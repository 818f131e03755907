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
