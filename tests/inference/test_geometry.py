"""The fast path's level-and-drops coordinates: an exact change of variables of the same posterior."""

import numpy as np
import pytest
from conftest import TRUE_CHINCHILLA, quick, simulate_ladder

import bayescale as bs
from bayescale.inference import programs, sampling
from bayescale.inference.geometry import LevelAndDrops, reparametrise
from bayescale.model.jax_density import build_density
from bayescale.model.priors import Prior
from bayescale.model.pymc_model import resolve_priors

pytestmark = pytest.mark.filterwarnings("ignore::bayescale.FitWarning")

NORMAL_EXPONENT = Prior("Normal", mu=0.35, sigma=0.1)


def _density(law="chinchilla", priors=None, fix=None, runs=None):
    law_obj = bs.get_law(law)
    if runs is None:
        runs = bs.Runs.from_any(simulate_ladder("chinchilla", TRUE_CHINCHILLA, seed=11))
    free, fixed = resolve_priors(law_obj, "student_t", priors, fix)
    return build_density(law_obj, runs, free, fixed, "student_t")


def _one_token_count():
    """Runs that all trained on the same D (as the Gemstones final checkpoints): B's term has no drop."""
    frame = simulate_ladder("chinchilla", TRUE_CHINCHILLA, seed=11)
    frame["tokens"] = 3.5e11
    return bs.Runs.from_any(frame.drop_duplicates("params"))


def _one_ratio():
    """Runs that all trained on 20 tokens per parameter: the two terms' drops move together."""
    frame = simulate_ladder("chinchilla", TRUE_CHINCHILLA, seed=11, multipliers=(20,))
    return bs.Runs.from_any(frame)


#: A wrapped density with drop terms only, one where B's term takes a share of the level, and
#: one whose two drops are pooled.
WRAPPED = {
    "drops": lambda: reparametrise(_density()),
    "share": lambda: reparametrise(_density(runs=_one_token_count())),
    "pooled": lambda: reparametrise(_density(runs=_one_ratio())),
}


def _points(density, n=6, seed=0):
    rng = np.random.default_rng(seed)
    return density.initial_point() + rng.normal(0.0, 0.5, (n, density.size))


def test_chinchilla_samples_the_level_and_the_drops():
    wrapped = reparametrise(_density())
    assert isinstance(wrapped, LevelAndDrops)
    assert wrapped.sites[wrapped.level].name == "E"
    assert [wrapped.sites[t.amplitude].name for t in wrapped.terms] == ["A", "B"]
    assert all(below > 0 for below in wrapped.below)


@pytest.mark.parametrize("case", WRAPPED)
def test_the_map_and_its_inverse_agree(case):
    wrapped = WRAPPED[case]()
    position = _points(wrapped.density)
    w = wrapped.from_density(position)
    back, _ = wrapped.to_density(w)
    np.testing.assert_allclose(back, position, rtol=1e-10, atol=1e-10)
    # The level is log(E + the terms at the reference point): the loss the law predicts there.
    theta = wrapped.density.constrain(position)
    t = np.exp(position[:, [s.transform == "centered" for s in wrapped.sites]]).sum(axis=1)
    np.testing.assert_allclose(w[:, wrapped.level], np.log(theta["E"] + t), rtol=1e-12)


@pytest.mark.parametrize("case", WRAPPED)
def test_log_jacobian_is_the_log_determinant_of_the_map(case):
    import jax
    import jax.numpy as jnp

    wrapped = WRAPPED[case]()
    for w in wrapped.from_density(_points(wrapped.density)):
        jacobian = jax.jacfwd(lambda v: wrapped.to_density(v, jnp)[0])(jnp.asarray(w))
        _, expected = np.linalg.slogdet(np.asarray(jacobian))
        _, got = wrapped.to_density(w)
        assert float(got) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("case", WRAPPED)
def test_log_density_is_the_density_plus_the_jacobian_and_every_point_has_positive_e(case):
    wrapped = WRAPPED[case]()
    data = wrapped.data
    for position in _points(wrapped.density):
        w = wrapped.from_density(position)
        _, log_jac = wrapped.to_density(w)
        expected = float(wrapped.density.logp(position, data)) + float(log_jac)
        assert float(wrapped.logp(w, data)) == pytest.approx(expected, rel=1e-10)
        assert float(wrapped.logp_unchunked(w, data)) == pytest.approx(expected, rel=1e-10)
    # No wall at E = 0: far-out coordinates still map to E > 0 and a finite density.
    rng = np.random.default_rng(1)
    w = wrapped.from_density(wrapped.density.initial_point()) + rng.normal(0.0, 2.0, (200, wrapped.size))
    position, log_jac = wrapped.to_density(w)
    theta = wrapped.density.constrain(position)
    assert np.all(theta["E"] > 0) and np.all(np.isfinite(log_jac))


@pytest.mark.parametrize(
    ("law", "priors", "fix"),
    [
        ("chinchilla", None, {"E": 1.8}),  # no free E: no level to sample
        ("chinchilla", {"E": Prior("Normal", mu=1.8, sigma=0.2)}, None),  # E not on the log scale
        ("chinchilla", {"alpha_N": NORMAL_EXPONENT, "alpha_D": NORMAL_EXPONENT}, None),  # alphas not on log
        ("kaplan", None, None),  # no E, no centred amplitude
    ],
)  # fmt: skip
def test_models_without_a_level_and_drops_keep_their_coordinates(law, priors, fix):
    density = _density(law, priors, fix)
    assert reparametrise(density) is density


def test_one_term_with_a_log_exponent_is_enough():
    wrapped = reparametrise(_density(priors={"alpha_D": Prior("Normal", mu=0.35, sigma=0.1)}))
    assert [wrapped.sites[t.amplitude].name for t in wrapped.terms] == ["A"]


def test_a_covariate_without_span_has_no_drop_but_a_share_of_the_level():
    frame = simulate_ladder("chinchilla", TRUE_CHINCHILLA, seed=11, sizes=np.array([1e8]))
    wrapped = reparametrise(_density(runs=bs.Runs.from_any(frame)))
    assert [wrapped.sites[t.amplitude].name for t in wrapped.terms] == ["B"]
    assert [wrapped.sites[j].name for j in wrapped.shares] == ["A"]
    # B's exponent off the log scale: no drop term, but A's share still straightens E + t_A.
    density = _density(runs=bs.Runs.from_any(frame), priors={"alpha_D": Prior("Normal", mu=0.35, sigma=0.1)})
    wrapped = reparametrise(density)
    assert wrapped.terms == () and [wrapped.sites[j].name for j in wrapped.shares] == ["A"]
    one_d = reparametrise(_density(runs=_one_token_count()))
    assert [one_d.sites[t.amplitude].name for t in one_d.terms] == ["A"]
    assert [one_d.sites[j].name for j in one_d.shares] == ["B"]


def test_drops_are_pooled_only_where_the_covariates_move_together():
    assert reparametrise(_density()).pooled is None  # Chinchilla-like ladder: 5 ratios of D to N
    wrapped = reparametrise(_density(runs=_one_ratio()))
    assert wrapped.pooled == (0, 1) and [wrapped.sites[t.amplitude].name for t in wrapped.terms] == ["A", "B"]
    # The first amplitude coordinate is the log of the summed drops, the second the logit of A's share.
    position = _points(wrapped.density)
    w = wrapped.from_density(position)
    unpooled = LevelAndDrops(wrapped.density, wrapped.level, wrapped.terms, wrapped.below)
    drops = unpooled.from_density(position)[:, [1, 2]]
    np.testing.assert_allclose(w[:, 1], np.logaddexp(drops[:, 0], drops[:, 1]), rtol=1e-12)
    np.testing.assert_allclose(w[:, 2], drops[:, 0] - drops[:, 1], rtol=1e-10, atol=1e-12)
    assert programs._structure(wrapped) != programs._structure(unpooled)


def test_programs_of_the_two_coordinate_systems_are_cached_apart():
    density = _density()
    assert programs._structure(density) != programs._structure(reparametrise(density))


def _same_quantiles(new, old, names):
    """Medians and 5%/95% quantiles of every parameter agree within 4 Monte Carlo standard errors."""
    import arviz as az

    for name in names:
        a, b = new.idata.posterior[name], old.idata.posterior[name]
        for q in (0.05, 0.5, 0.95):
            se = np.hypot(
                float(az.mcse(a, method="quantile", prob=q)), float(az.mcse(b, method="quantile", prob=q))
            )
            assert abs(float(a.quantile(q)) - float(b.quantile(q))) < 4 * se, (name, q)


@pytest.mark.slow
def test_posterior_is_the_same_in_both_coordinate_systems(monkeypatch):
    runs = simulate_ladder("chinchilla", TRUE_CHINCHILLA, seed=5)
    settings = quick(draws=1000, tune=1000, chains=4)
    new = bs.fit(runs, random_seed=3, **settings)
    monkeypatch.setattr(sampling, "reparametrise", lambda density: density)
    old = bs.fit(runs, random_seed=4, **settings)
    _same_quantiles(new, old, ["E", "A", "B", "alpha_N", "alpha_D", "sigma", "nu"])


@pytest.mark.slow
def test_posterior_is_the_same_with_the_drops_pooled_or_not(monkeypatch):
    from bayescale.inference import geometry

    runs = simulate_ladder(
        "chinchilla", TRUE_CHINCHILLA, seed=5, sizes=np.geomspace(2e7, 1e9, 8), multipliers=(20,)
    )
    priors = bs.published_priors("epoch-chinchilla", parameters=["A", "B", "alpha_N", "alpha_D"])
    settings = quick(draws=1000, tune=1000, chains=4)
    with pytest.warns(bs.RunsWarning, match="cannot tell alpha_N from alpha_D"):
        pooled = bs.fit(runs, priors=priors, random_seed=3, **settings)
    monkeypatch.setattr(geometry, "_POOLED_SPAN", 0.0)
    with pytest.warns(bs.RunsWarning, match="cannot tell alpha_N from alpha_D"):
        apart = bs.fit(runs, priors=priors, random_seed=4, **settings)
    # The straight ridge needs shorter trajectories (seen: 15 leapfrog steps per draw against 127).
    assert pooled.diagnostics["median_steps"] < apart.diagnostics["median_steps"]
    _same_quantiles(pooled, apart, ["E", "A", "B", "alpha_N", "alpha_D", "sigma", "nu"])
