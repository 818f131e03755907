"""Runs padded to a few shape buckets: the same posterior, and one compiled program per bucket."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import TRUE_CHINCHILLA, quick, simulate_ladder

import bayescale as bs
from bayescale.inference import programs
from bayescale.inference.geometry import LevelAndDrops, reparametrise
from bayescale.model.jax_density import CHUNK, bucket, build_density
from bayescale.model.pymc_model import resolve_priors

pytestmark = pytest.mark.filterwarnings("ignore::bayescale.FitWarning")


def test_buckets_cover_every_size_with_little_padding():
    sizes = range(1, 6 * CHUNK, 7)
    buckets = [bucket(n) for n in sizes]
    assert all(b >= n for b, n in zip(buckets, sizes, strict=True))
    assert buckets == sorted(buckets)
    # doubling up to 64 rows (cheap either way), then at most 50% more rows than runs
    assert all(b <= max(8, 2 * n if n <= 64 else 1.5 * n) for b, n in zip(buckets, sizes, strict=True))
    assert sorted({b for b in buckets if b <= 256}) == [8, 16, 32, 64, 96, 128, 192, 256]
    above = [b for b, n in zip(buckets, sizes, strict=True) if n > 4 * CHUNK]
    assert all(b % CHUNK == 0 for b in above)  # whole blocks of the chunked likelihood


def _density(law, runs, likelihood="student_t"):
    law_obj = bs.get_law(law)
    free, fixed = resolve_priors(law_obj, likelihood, None, None)
    return build_density(law_obj, bs.Runs.from_any(runs), free, fixed, likelihood)


def _unpadded(data, n):
    """The density's data with the padding cut off: what the density was before buckets."""
    rows = {"x": {k: v[:n] for k, v in data["x"].items()}, "y": data["y"][:n], "mask": data["mask"][:n]}
    return {**data, **rows}


def _chinchilla_runs(n, seed=11):
    frame = simulate_ladder("chinchilla", TRUE_CHINCHILLA, seed=seed)
    if n <= len(frame):
        return frame.iloc[:n]
    many = frame.sample(n, replace=True, random_state=seed).reset_index(drop=True)
    many["params"] *= np.exp(np.random.default_rng(seed).uniform(-0.01, 0.01, n))  # no repeated rows
    return many


@pytest.mark.parametrize(
    ("law", "likelihood", "runs", "whitened"),
    [
        ("chinchilla", "student_t", 35, False),
        ("chinchilla", "normal", 21, False),
        ("chinchilla", "student_t", 35, True),  # the level-and-drops coordinates, with data["below"]
        ("kaplan-e", "student_t", 13, False),
        ("chinchilla", "normal", CHUNK + 300, False),  # chunked: one block and a padded remainder
    ],
)
def test_padding_leaves_the_log_density_and_its_gradient_unchanged(law, likelihood, runs, whitened):
    density = _density(law, _chinchilla_runs(runs), likelihood)
    if whitened:
        density = reparametrise(density)
        assert isinstance(density, LevelAndDrops)
    data = jax.tree.map(jnp.asarray, density.data)
    n = density.observations
    assert n == runs and data["y"].shape[0] == bucket(runs) > runs
    rng = np.random.default_rng(0)
    for point in density.initial_point() + rng.normal(0.0, 0.3, (3, density.size)):
        padded = jax.value_and_grad(density.logp)(jnp.asarray(point), data)
        plain = jax.value_and_grad(density.logp)(jnp.asarray(point), _unpadded(data, n))
        np.testing.assert_allclose(float(padded[0]), float(plain[0]), rtol=1e-12)
        np.testing.assert_allclose(np.asarray(padded[1]), np.asarray(plain[1]), rtol=1e-10, atol=1e-10)


def test_the_reference_points_are_data_not_program_constants():
    small, large = _density("chinchilla", _chinchilla_runs(35)), _density("chinchilla", _chinchilla_runs(40))
    assert small.data["ref"]["A"] != large.data["ref"]["A"]
    assert programs._structure(small) == programs._structure(large)
    assert programs._structure(reparametrise(small)) == programs._structure(reparametrise(large))


def test_a_ladder_reuses_the_programs_of_another_in_its_bucket(tmp_path, monkeypatch):
    """35 runs after 40 (one bucket) compile nothing new; 20 runs (another bucket) share nothing."""
    monkeypatch.setenv("BAYESCALE_CACHE_DIR", str(tmp_path / "cache"))
    programs.clear()
    settings = quick(backend="jax")
    ladder = simulate_ladder("chinchilla", TRUE_CHINCHILLA, seed=11)

    def programs_of(runs):
        before = set(programs.loaded())
        fit = bs.fit(runs, law="chinchilla", random_seed=5, **settings)
        return fit, set(programs.loaded()) - before, set(programs.loaded())

    _, first, _ = programs_of(ladder.iloc[:40])
    assert first  # the 40-run ladder's programs were made
    reused, new, _ = programs_of(ladder.iloc[:35])
    assert new == set()
    _, other, _ = programs_of(ladder.iloc[:20])
    assert other and not (other & first)

    # The reused programs give the 35-run ladder the draws its own programs give it.
    monkeypatch.setenv("BAYESCALE_CACHE_DIR", str(tmp_path / "cache-35"))
    programs.clear()
    alone = bs.fit(ladder.iloc[:35], law="chinchilla", random_seed=5, **settings)
    for name in ("E", "A", "B", "alpha_N", "alpha_D"):
        np.testing.assert_array_equal(reused.posterior[name].values, alone.posterior[name].values)
