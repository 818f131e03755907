"""The fast path (hand-built JAX density + numpyro) is the same model as the PyMC one, and falls back."""

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from conftest import MUENNIGHOFF_C4, QUICK, TRUE_CHINCHILLA, quick, simulate_ladder

import bayescale as bs
from bayescale.errors import BayescaleError
from bayescale.inference import container, fast_path, laplace, nuts, programs, sampling, sharding
from bayescale.model import jax_backend
from bayescale.model.jax_density import build_density, unsupported
from bayescale.model.laws import Centering, ScalingLaw
from bayescale.model.laws.chinchilla import ChinchillaLaw, theta_log
from bayescale.model.laws.ops import logsumexp
from bayescale.model.priors import SUPPORTED_DISTRIBUTIONS, Prior
from bayescale.model.pymc_model import build_model, resolve_priors

pytest.importorskip("numpyro")
pytestmark = pytest.mark.filterwarnings("ignore::bayescale.FitWarning")

LAW_TRUTH = {
    "chinchilla": TRUE_CHINCHILLA,
    "data-constrained": MUENNIGHOFF_C4,
    "kaplan": {"N_c": 8.8e13, "D_c": 5.4e13, "alpha_N": 0.076, "alpha_D": 0.095},
    "kaplan-n": {"N_c": 8.8e13, "alpha_N": 0.076},
    "kaplan-d": {"D_c": 5.4e13, "alpha_D": 0.095},
    "kaplan-e": {"E": 1.8, "N_c": 5e7, "D_c": 1e9, "alpha_N": 0.34, "alpha_D": 0.37},
}

#: One prior of every supported distribution, placed on a parameter whose support it fits.
USER_PRIORS = {
    "Normal": Prior("Normal", mu=0.35, sigma=0.1),
    "LogNormal": Prior("LogNormal", mu=0.5, sigma=0.5),
    "HalfNormal": Prior("HalfNormal", sigma=2.0),
    "TruncatedNormal": Prior("TruncatedNormal", mu=0.3, sigma=0.2, lower=0.01, upper=1.5),
    "StudentT": Prior("StudentT", nu=4.0, mu=0.3, sigma=0.2),
    "HalfStudentT": Prior("HalfStudentT", nu=3.0, sigma=0.1),
    "Gamma": Prior("Gamma", alpha=3.0, beta=8.0),
    "Exponential": Prior("Exponential", lam=2.0),
    "Uniform": Prior("Uniform", lower=0.01, upper=1.5),
    "Beta": Prior("Beta", alpha=2.0, beta=5.0),
}


def _runs(law: str) -> bs.Runs:
    rng = np.random.default_rng(4)
    frame = simulate_ladder("chinchilla", TRUE_CHINCHILLA, seed=11)
    frame["unique_tokens"] = frame["tokens"] / rng.uniform(1, 8, len(frame))
    x = {"N": frame["params"], "D": frame["tokens"], "U": frame["unique_tokens"]}
    law_obj = bs.get_law(law)
    frame["loss"] = law_obj.loss(LAW_TRUTH[law], **x) * np.exp(rng.standard_t(3, len(frame)) * 0.01)
    return bs.Runs.from_any(pd.DataFrame(frame))


def _compare(law: str, likelihood: str, priors=None, fixed=None, points: int = 4) -> None:
    law_obj = bs.get_law(law)
    runs = _runs(law)
    free, fix = resolve_priors(law_obj, likelihood, priors, fixed)
    model = build_model(law_obj, runs, free, fix, likelihood)
    density = build_density(law_obj, runs, free, fix, likelihood)
    assert sorted(density.value_names) == sorted(v.name for v in model.value_vars)
    pymc_logp = model.compile_logp()
    rng = np.random.default_rng(0)
    for _ in range(points):
        position = density.initial_point() + rng.normal(0.0, 0.7, density.size)
        expected = float(pymc_logp(dict(zip(density.value_names, position, strict=True))))
        got = float(density.logp(position, density.data))
        assert np.isfinite(expected)
        assert got == pytest.approx(expected, rel=1e-9, abs=1e-6)


@pytest.mark.parametrize("likelihood", ["student_t", "normal"])
@pytest.mark.parametrize("law", sorted(LAW_TRUTH))
def test_jax_density_equals_pymc_logp(law, likelihood):
    _compare(law, likelihood)


#: Models with user priors and fixed values: together every prior distribution, each of the three
#: transforms, centred amplitudes with non-default priors and uncentred ones (exponent fixed).
VARIANTS = [
    (
        "chinchilla",
        {
            "E": USER_PRIORS["TruncatedNormal"],
            "alpha_N": USER_PRIORS["Normal"],
            "A": USER_PRIORS["Gamma"],
            "sigma": USER_PRIORS["HalfStudentT"],
            "nu": USER_PRIORS["Exponential"],
        },
        {"alpha_D": 0.37},
    ),
    (
        "chinchilla",
        {
            "E": USER_PRIORS["Uniform"],
            "alpha_N": USER_PRIORS["Beta"],
            "alpha_D": USER_PRIORS["StudentT"],
            "B": USER_PRIORS["LogNormal"],
            "sigma": USER_PRIORS["HalfNormal"],
        },
        {"A": 2000.0},
    ),
    ("data-constrained", {"R_D_star": USER_PRIORS["Gamma"]}, {"R_N_star": 5.3, "E": 1.9}),
]


@pytest.mark.parametrize("likelihood", ["student_t", "normal"])
@pytest.mark.parametrize("variant", range(len(VARIANTS)))
def test_jax_density_with_user_priors_and_fixed_parameters(variant, likelihood):
    law, priors, fixed = VARIANTS[variant]
    priors = {k: v for k, v in priors.items() if likelihood == "student_t" or k != "nu"}
    _compare(law, likelihood, priors=priors, fixed=fixed)


def test_every_prior_distribution_is_covered():
    used = {p.distribution for _, priors, _ in VARIANTS for p in priors.values()}
    assert used == set(SUPPORTED_DISTRIBUTIONS)


def test_every_plain_law_takes_the_fast_path():
    for name in bs.list_laws():
        law = bs.get_law(name)
        if name in LAW_TRUTH:
            assert unsupported(law, law.default_priors(), "student_t") is None


class _PowerPlusConstant(ScalingLaw):
    """A new law written as one small file would be: L = E + A / N^alpha_N, mean over ops."""

    name = "power-plus-constant-test"
    title = reference = formula = "L = E + A / N^alpha_N"
    parameters = tuple(p for p in ChinchillaLaw.parameters if p.name in ("E", "A", "alpha_N"))
    required_columns = ("params",)
    centerings = (Centering("A", "alpha_N", "log_params"),)

    def log_loss(self, theta, x, ops):
        terms = [theta_log(theta, "E", ops), theta_log(theta, "A", ops) - theta["alpha_N"] * x["log_params"]]
        return logsumexp(terms, ops)


class _NumpyMean(_PowerPlusConstant):
    """The same law with its mean written in numpy: JAX cannot trace it."""

    name = "numpy-mean-test"

    def log_loss(self, theta, x, ops):
        return np.log(np.asarray(theta["E"]) + theta["A"] * np.exp(-theta["alpha_N"] * x["log_params"]))


def test_a_new_law_without_pooling_takes_the_fast_path():
    law = _PowerPlusConstant()
    runs = simulate_ladder("chinchilla", TRUE_CHINCHILLA, seed=1)
    assert unsupported(law, law.default_priors(), "student_t") is None
    fit = bs.fit(
        runs, law=law, random_seed=1, sampler={"draws": 50, "tune": 100, "chains": 1}, progressbar=False,
        warn=False,
    )  # fmt: skip
    assert fit.sampler.backend == "jax"
    assert set(fit.parameter_names) >= {"E", "A", "alpha_N"}
    assert np.isfinite(fit.posterior["alpha_N"].values).all()


def test_the_fast_path_refuses_pooled_laws_and_means_jax_cannot_trace():
    grouped = bs.get_law("chinchilla-grouped")
    assert "pooled parameters ['E']" in unsupported(grouped, grouped.default_priors(), "normal")
    law = _NumpyMean()
    reason = unsupported(law, law.default_priors(), "normal")
    assert "not written over the ops namespace" in reason


def test_unsupported_model_falls_back_to_pymc(monkeypatch):
    law = _NumpyMean()
    runs = bs.Runs.from_any(simulate_ladder("chinchilla", TRUE_CHINCHILLA, seed=1))
    free, fixed = resolve_priors(law, "normal")
    assert "not written over the ops namespace" in unsupported(law, free, "normal")
    seen = {}

    draws = container.from_groups(
        posterior=xr.Dataset({"E": (("chain", "draw"), np.ones((1, 10)))}),
        sample_stats=xr.Dataset({"diverging": (("chain", "draw"), np.zeros((1, 10), bool))}),
    )

    def fake_sample(model, config, random_seed, progressbar):
        seen["backend"] = config.backend
        return draws

    monkeypatch.setattr(sampling, "sample", fake_sample)
    monkeypatch.setattr(sampling, "build_model", lambda *args: "model")
    config = sampling.SamplerConfig(draws=10, tune=10, chains=1)
    idata, used = sampling.run(law, runs, free, fixed, "normal", config, 0, False)
    assert container.posterior(idata).identical(container.posterior(draws))
    assert used == seen["backend"]
    assert used in ("numpyro", "nutpie", "pymc")
    # the draws say which path drew them, and why not the fast one
    path = container.group(idata, "sample_stats").attrs["sampler_path"]
    assert path.startswith(f"PyMC model with {used} (not the fast path: ") and "ops namespace" in path
    with pytest.raises(BayescaleError, match="backend 'jax' cannot fit this model"):
        config = sampling.SamplerConfig(draws=10, tune=10, chains=1, backend="jax")
        sampling.run(law, runs, free, fixed, "normal", config, 0, False)


def test_fast_fit_is_reproducible_and_recorded(tmp_path):
    runs = simulate_ladder("chinchilla", TRUE_CHINCHILLA, seed=7)
    first = bs.fit(runs, law="chinchilla", random_seed=5, **quick(backend="jax"))
    second = bs.fit(runs, law="chinchilla", random_seed=5, **quick(backend="jax"))
    other = bs.fit(runs, law="chinchilla", random_seed=6, **quick(backend="jax"))
    assert first.sampler.backend == "jax"
    for name in first.parameter_names:
        np.testing.assert_array_equal(first.posterior[name].values, second.posterior[name].values)
    assert not np.array_equal(first.posterior["E"].values, other.posterior["E"].values)
    assert first.posterior.sizes == {"chain": QUICK["sampler"]["chains"], "draw": QUICK["sampler"]["draws"]}
    assert "diverging" in first.idata.sample_stats
    loaded = bs.load_fit(first.save(tmp_path / "fast.nc"))
    assert loaded.sampler.backend == "jax"


def test_cache_dir_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv(jax_backend.CACHE_ENV, str(tmp_path))
    assert jax_backend.cache_dir() == tmp_path
    monkeypatch.setenv(jax_backend.CACHE_ENV, "0")
    assert jax_backend.cache_dir() is None
    monkeypatch.delenv(jax_backend.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert jax_backend.cache_dir() == tmp_path / "bayescale" / "jax"


def test_the_compilation_cache_is_locked_for_concurrent_processes(tmp_path):
    """A size limit is what turns on JAX's file lock around cache reads and writes."""
    import subprocess
    import sys

    code = (
        "from bayescale.model import jax_backend\n"
        "jax = jax_backend.setup_jax()\n"
        "values = jax.config.values\n"
        "print(values['jax_compilation_cache_dir'], values['jax_compilation_cache_max_size'])"
    )
    env = {**os.environ, jax_backend.CACHE_ENV: str(tmp_path)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == [str(tmp_path), str(jax_backend.CACHE_MAX_BYTES)], done.stderr


def test_fast_path_does_not_import_pymc(tmp_path):
    import subprocess
    import sys

    code = (
        "import sys, bayescale as bs\n"
        "f = bs.fit('chinchilla', sampler={'draws': 20, 'tune': 30, 'chains': 1, 'backend': 'jax'},\n"
        "           progressbar=False, warn=False, random_seed=0)\n"
        f"f.save({str(tmp_path / 'f.nc')!r})\n"
        "print(f.sampler.backend, 'pymc' in sys.modules, 'pytensor' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["jax", "False", "False"]


def test_chunked_likelihood_equals_whole_array_one():
    """Above CHUNK observations logp sums blocks (value and gradient): same numbers as one piece."""
    import jax
    import jax.numpy as jnp

    from bayescale.model import jax_density

    rng = np.random.default_rng(2)
    n = 2 * jax_density.CHUNK + 123
    N = np.exp(rng.uniform(np.log(5e7), np.log(2e9), n))
    frame = pd.DataFrame({"params": N, "tokens": N * rng.uniform(5, 80, n)})
    frame["loss"] = ChinchillaLaw().loss(TRUE_CHINCHILLA, frame["params"], frame["tokens"]) * np.exp(
        rng.standard_t(4, n) * 0.01
    )
    law = bs.get_law("chinchilla")
    for likelihood in ("student_t", "normal"):
        free, fixed = resolve_priors(law, likelihood)
        density = build_density(law, bs.Runs.from_any(frame), free, fixed, likelihood)
        data = jax.tree.map(jnp.asarray, density.data)
        points = jnp.asarray(density.initial_point() + rng.normal(0.0, 0.3, (3, density.size)))
        chunked = jax.vmap(jax.value_and_grad(density.logp), in_axes=(0, None))(points, data)
        whole = jax.vmap(jax.value_and_grad(density.logp_unchunked), in_axes=(0, None))(points, data)
        np.testing.assert_allclose(chunked[0], whole[0], rtol=1e-11)
        np.testing.assert_allclose(
            chunked[1], whole[1], rtol=1e-8, atol=1e-8 * float(jnp.abs(whole[1]).max())
        )


def test_kinetic_energy_that_overflows_is_a_divergence():
    """numpyro's 0.5 r.M^-1.r can overflow to -inf (an 'infinite energy gain'); ours gives +inf."""
    import jax.numpy as jnp
    from numpyro.infer.hmc_util import euclidean_kinetic_energy

    kinetic = nuts._kinetic_energy()
    matrix = jnp.asarray([[2.0, 0.5], [0.5, 1.0]])
    r = jnp.asarray([0.3, -1.2])
    assert float(kinetic(matrix, r)) == pytest.approx(float(euclidean_kinetic_energy(matrix, r)))
    huge = jnp.asarray([1e200, -1e300])
    assert float(euclidean_kinetic_energy(-jnp.eye(2), huge)) == -np.inf  # the hole, made easy to hit
    for m in (-jnp.eye(2), matrix):
        assert float(kinetic(m, huge)) == np.inf
    assert float(kinetic(matrix, jnp.asarray([np.nan, 0.0]))) == np.inf


@pytest.mark.slow
def test_far_start_is_not_stranded_by_an_overflowing_step():
    """The warm-up drift of session 2 (alpha_N ~ 1e100, r_hat 3.6), replayed at the NUTS level.

    From this start (one chain's start then, on the design tests' small ladder) with the Laplace
    covariance as metric and numpyro's first step size, one leapfrog step lands at potential
    ~1e227 and numpyro's own kinetic energy overflows to -inf: the step is accepted and the
    chain is stranded, for every key tried. With the guarded kinetic energy it never is.
    Slow (8 kernels built over 4 keys, the largest test of this folder: 123 s at load 16); the
    default run keeps the guard's unit test above and the fit on the same ladder below.
    """
    import jax
    import jax.numpy as jnp
    from numpyro.infer.hmc import hmc

    runs = simulate_ladder("chinchilla", TRUE_CHINCHILLA, seed=11)
    runs = runs[runs["params"] < 3e8].reset_index(drop=True)
    law = bs.get_law("chinchilla")
    free, fixed = resolve_priors(law, "student_t")
    density = build_density(law, bs.Runs.from_any(runs), free, fixed)
    data = jax.tree.map(jnp.asarray, density.data)
    _, root = laplace._laplace(density, data)
    start = jnp.asarray([0.35, 0.22, -0.37, -1.59, -0.94, -4.93, 4.01])

    def stranded(kinetic_fn) -> int:
        init_kernel, sample_kernel = hmc(potential_fn=lambda z: -density.logp(z, data), kinetic_fn=kinetic_fn)
        count = 0
        for seed in range(4):
            state = init_kernel(
                start,
                num_warmup=300,
                dense_mass=True,
                target_accept_prob=0.95,
                inverse_mass_matrix=jnp.asarray(root @ root.T),
                rng_key=jax.random.PRNGKey(seed),
            )
            for _ in range(3):
                state = sample_kernel(state)
            count += bool(state.potential_energy > 1e6)
        return count

    assert stranded(None) == 4  # the hole is real (if numpyro fixes it, this line tells us)
    assert stranded(nuts._kinetic_energy()) == 0


def test_small_ladder_that_stranded_a_chain_now_mixes():
    """tests/questions/test_design.py's small_fit (seed 5) on the fast path: no chain strays."""
    runs = simulate_ladder("chinchilla", TRUE_CHINCHILLA, seed=11)
    runs = runs[runs["params"] < 3e8].reset_index(drop=True)
    fit = bs.fit(runs, law="chinchilla", random_seed=5, **quick(backend="jax"))
    assert fit.diagnostics["divergences"] == 0
    assert fit.diagnostics["max_r_hat"] < 1.1
    alpha = fit.posterior["alpha_N"].values
    assert np.all(np.isfinite(fit.posterior["A"].values))
    assert np.all((alpha > 0.05) & (alpha < 2.0))


@pytest.mark.slow
def test_fast_path_sweep_no_chain_strays_on_small_ladders():
    """20 small, weakly identified ladders at QUICK settings: every chain stays in the posterior.

    Session 2's fast path stranded one chain at alpha_N ~ 1e100 on such a ladder. Short runs of
    these banana-shaped posteriors do not reach r_hat 1.01 on any backend; a stranded chain gives
    r_hat in the hundreds, an infinite A or an alpha_N far above its prior's range.
    """
    for seed in range(20):
        runs = simulate_ladder("chinchilla", TRUE_CHINCHILLA, seed=seed)
        runs = runs[runs["params"] < 3e8].reset_index(drop=True)
        fit = bs.fit(runs, law="chinchilla", random_seed=seed, **quick(backend="jax"))
        alpha = fit.posterior["alpha_N"].values
        assert np.all(np.isfinite(fit.posterior["A"].values)), seed
        assert np.all((alpha > 0.05) & (alpha < 2.0)), seed
        assert fit.diagnostics["max_r_hat"] < 1.2, seed
        assert fit.diagnostics["divergences"] == 0, seed


def test_export_cache_is_safe_with_concurrent_writers(tmp_path):
    """Two processes exporting the same programs at once leave whole, loadable files (fit_many pools)."""
    import subprocess
    import sys

    code = (
        "from bayescale.inference import programs\n"
        "from bayescale.model import jax_backend\n"
        "jax = jax_backend.setup_jax()\n"
        "import jax.numpy as jnp\n"
        "f = jax.jit(lambda x: jnp.sin(x) * 2)\n"
        "x = jnp.arange(3.0)\n"
        "total = sum(float(programs._exported(lambda: f, f'key{i}', (x,)).sum()) for i in range(20))\n"
        "print(repr(total))\n"
    )
    env = {**os.environ, jax_backend.CACHE_ENV: str(tmp_path)}
    procs = [
        subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0]
    expected = 20 * float(np.sum(np.sin(np.arange(3.0)) * 2))
    assert [float(o) for o in outputs] == pytest.approx([expected, expected])
    files = sorted((tmp_path / "exported").iterdir())
    assert [f.name for f in files] == sorted(f"key{i}.bin" for i in range(20))  # no partial files left
    jax = jax_backend.setup_jax()
    from jax import export

    for f in files:
        program = export.deserialize(bytearray(f.read_bytes()))
        out = program.call(jax.numpy.arange(3.0))
        np.testing.assert_allclose(np.asarray(out), np.sin(np.arange(3.0)) * 2)


def test_a_collapsed_chain_does_not_set_the_shared_step_size():
    """SBC found a chain that collapsed in warm-up (step 3e-17); the plain minimum froze every chain."""
    from bayescale.inference.sampling import shared_step_size

    assert shared_step_size(np.array([0.13, 0.22, 0.16, 0.15])) == pytest.approx(0.13)
    assert shared_step_size(np.array([3e-17, 0.2])) == pytest.approx(0.2)
    assert shared_step_size(np.array([3e-17, 0.2, 0.1, 0.15])) == pytest.approx(0.1)


def test_a_collapsed_chain_restarts_from_the_healthy_chain_with_the_smallest_step():
    import jax.numpy as jnp
    from numpyro.infer.hmc import HMCState
    from numpyro.infer.hmc_util import HMCAdaptState

    chains, size = 3, 2
    z = jnp.arange(chains * size, dtype=float).reshape(chains, size)
    metric = jnp.stack([jnp.eye(size) * (c + 1) for c in range(chains)])
    adapt = HMCAdaptState(jnp.array([0.1, 1e-17, 0.2]), metric, metric, metric, None, None, None, None)
    per_chain = jnp.array([1.0, 2.0, 3.0])
    states = HMCState(*(None,) * 13)._replace(
        z=z, z_grad=-z, potential_energy=per_chain, energy=per_chain, adapt_state=adapt
    )
    out, collapsed = nuts._end_warmup(states)
    np.testing.assert_array_equal(collapsed, [False, True, False])
    np.testing.assert_array_equal(out.z, jnp.stack([z[0], z[0], z[2]]))
    np.testing.assert_array_equal(out.z_grad, -out.z)
    np.testing.assert_array_equal(out.potential_energy, [1.0, 1.0, 3.0])
    np.testing.assert_array_equal(out.adapt_state.inverse_mass_matrix[1], metric[0])
    np.testing.assert_array_equal(out.adapt_state.inverse_mass_matrix[2], metric[2])
    np.testing.assert_array_equal(out.adapt_state.step_size, [0.1, 0.1, 0.1])


def test_exported_programs_give_the_jitted_results(monkeypatch, tmp_path):
    """The sampler and the Laplace step (gradient, Hessian, batched log density) load from the
    export cache, and a fit through it draws exactly what the freshly jitted programs draw."""
    runs = simulate_ladder("chinchilla", TRUE_CHINCHILLA, seed=3)
    settings = {"law": "chinchilla", "random_seed": 4, **quick(backend="jax")}

    programs.clear()
    monkeypatch.setenv(jax_backend.CACHE_ENV, "0")
    jitted = bs.fit(runs, **settings).posterior["alpha_N"].values
    assert programs.loaded() == []  # no cache: nothing exported or kept

    monkeypatch.setenv(jax_backend.CACHE_ENV, str(tmp_path))
    exported = bs.fit(runs, **settings).posterior["alpha_N"].values
    files = sorted((tmp_path / "exported").glob("*.bin"))
    assert len(files) == len(programs.loaded()) >= 4  # NUTS, value-and-gradient, Hessian, log density
    programs.clear()  # a new process: programs come from the files
    loaded = bs.fit(runs, **settings).posterior["alpha_N"].values
    assert sorted((tmp_path / "exported").glob("*.bin")) == files
    np.testing.assert_array_equal(exported, jitted)
    np.testing.assert_array_equal(loaded, jitted)


def test_the_program_key_covers_the_whole_package():
    """A compiled program's key hashes every module that can shape it: the laws, priors and
    likelihoods in model/, the methods' models, not only the sampler's own folder (it did, after
    the move into inference/, and a changed method loaded its stale program from the cache)."""
    package = Path(bs.__file__).resolve().parent
    hashed = {path.relative_to(package).as_posix() for path in programs._source_files()}
    assert hashed == {path.relative_to(package).as_posix() for path in package.rglob("*.py")}
    for module in ("model/likelihoods.py", "model/laws/chinchilla.py", "model/jax_density.py",
                   "methods/envelope.py", "inference/sampling.py", "__init__.py"):  # fmt: skip
        assert module in hashed


def _mapped_regions() -> int:
    with open("/proc/self/maps") as maps:
        return sum(1 for _ in maps)


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="counts Linux memory maps")
def test_loaded_programs_are_let_go_beyond_the_limit(monkeypatch, tmp_path):
    """Programs beyond PROGRAMS_KEPT are let go, the least recently used first, and their machine
    code with them: a process compiling many shapes (a test suite, a calibration study) stays far
    below Linux's 65530 memory maps, past which the next compilation crashes the process."""
    monkeypatch.setenv(jax_backend.CACHE_ENV, str(tmp_path))
    programs.clear()
    monkeypatch.setattr(programs, "PROGRAMS_KEPT", 3)
    jnp = jax_backend.setup_jax().numpy

    def compile_program(size: int) -> None:
        args = (np.linspace(0.0, 1.0, size),)
        program = programs._cached_program(
            ("test",), "cumsum", lambda: lambda x: jnp.cumsum(jnp.exp(x)), args
        )
        program(*args)

    keys = []
    for size in (2, 3, 4):
        compile_program(size)
        keys.append(programs.loaded()[-1])
    compile_program(2)  # used again: now the most recently used
    compile_program(5)
    assert programs.loaded() == [keys[2], keys[0], programs.loaded()[-1]]

    before = _mapped_regions()
    for size in range(6, 66):
        compile_program(size)
    grown = _mapped_regions() - before
    assert len(programs.loaded()) == 3
    # 60 programs kept would add 60 x (3+) maps; 3 kept add a few (allocator arenas, JAX's own caches).
    assert grown < 60, grown


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="counts Linux memory maps")
def test_pymc_numpyro_fits_let_go_of_their_programs():
    """JAX's caches kept every program PyMC compiled for numpyro (~900 memory maps a fit); a
    process of ~70 such fits crashed. Three fits of new shapes now leave a handful of maps."""
    import pymc as pm

    config = sampling.SamplerConfig(draws=20, tune=20, chains=1, backend="numpyro")
    for size in range(2, 7):
        with pm.Model() as model:
            pm.Normal("x", shape=size)
        sampling.sample(model, config, random_seed=1, progressbar=False)
        if size == 3:
            before = _mapped_regions()
    grown = _mapped_regions() - before
    assert grown < 60, grown  # kept, they added ~800


def test_mode_and_root_of_a_gaussian_and_of_a_ridge():
    """A Gaussian's mean and a root of its covariance; a flat direction (singular Hessian) gives None."""
    cov = np.array([[2.0, 0.6], [0.6, 0.5]])
    precision = np.linalg.inv(cov)
    mean = np.array([1.0, -2.0])

    def gaussian(x):
        d = x - mean
        return 0.5 * d @ precision @ d, precision @ d

    mode, root = laplace.mode_and_root(gaussian, lambda x: precision, np.zeros(2))
    np.testing.assert_allclose(mode, mean, atol=1e-5)
    np.testing.assert_allclose(root @ root.T, cov, rtol=1e-12)

    def flat(x):
        return x[1] ** 2, np.array([0.0, 2 * x[1]])

    assert (
        laplace.mode_and_root(flat, lambda x: np.diag([0.0, 2.0]), np.ones(2), ("BFGS", "trust-ncg")) is None
    )


def test_progress_bar_pieces_draw_what_the_single_program_draws(monkeypatch, capsys):
    """Sampled in pieces under a progress bar, a fit is the single program's, draw for draw."""
    runs = simulate_ladder("chinchilla", TRUE_CHINCHILLA, seed=3)
    settings = {**quick(backend="jax"), "law": "chinchilla", "random_seed": 4}
    single = bs.fit(runs, **settings)
    assert "NUTS" not in capsys.readouterr().err
    monkeypatch.setattr(fast_path, "BAR_WORK", 0)  # every fit is long enough for the bar
    monkeypatch.setattr(fast_path, "on_terminal", lambda: True)
    pieces = bs.fit(runs, **{**settings, "progressbar": True})
    bar = capsys.readouterr().err
    assert "NUTS, 2 chains, sampling" in bar and "divergences=" in bar
    # Off a terminal (a log file): stage lines only, no bar's carriage returns, the same draws.
    monkeypatch.setattr(fast_path, "on_terminal", lambda: False)
    logged = bs.fit(runs, **{**settings, "progressbar": True})
    log = capsys.readouterr().err
    assert "\r" not in log and "divergences=" not in log
    assert "bayescale: warm-up done (" in log and log.count("\n") < 15
    for name in ("alpha_N", "E", "sigma"):
        np.testing.assert_array_equal(pieces.posterior[name].values, single.posterior[name].values)
        np.testing.assert_array_equal(logged.posterior[name].values, single.posterior[name].values)
    for name in ("diverging", "step_size", "restarted"):
        np.testing.assert_array_equal(
            pieces.idata.sample_stats[name].values, single.idata.sample_stats[name].values
        )


def test_chunk_length_divides_the_iterations():
    assert fast_path._chunk_length(2000) == 100
    assert fast_path._chunk_length(500) == 25
    assert fast_path._chunk_length(600) == 30
    assert fast_path._chunk_length(7) == 1
    assert fast_path._chunk_length(13 * 101) == 101  # 1313: no divisor in [66, 100]


needs_two_devices = pytest.mark.skipif(
    jax_backend.setup_jax().local_device_count() < 2, reason="one CPU device: the chains are not split"
)


@needs_two_devices
def test_chains_split_over_devices_draw_what_one_device_draws(monkeypatch):
    """The sampler splits its chains over JAX's CPU devices (one per core): each chain is the one
    a single device draws. A batch of 2 chains rounds differently from one of 4 in the last digits,
    and NUTS's trajectories amplify that (seen: 1e-9 after 40 iterations, unrelated draws after 150,
    on this ladder), so the runs are short: the test checks which chain gets which key, start and
    state, not the rounding."""
    runs = simulate_ladder("chinchilla", TRUE_CHINCHILLA, seed=3)
    settings = {**quick(backend="jax", chains=4, tune=20, draws=20), "law": "chinchilla", "random_seed": 4}
    monkeypatch.setenv(jax_backend.CACHE_ENV, "0")
    assert sharding.chain_shards(4) == 2 and sharding.chain_shards(3) == 1
    split = bs.fit(runs, **settings)
    monkeypatch.setattr(sharding, "chain_shards", lambda chains: 1)
    whole = bs.fit(runs, **settings)
    for name in ("alpha_N", "E", "sigma"):
        np.testing.assert_allclose(split.posterior[name].values, whole.posterior[name].values, rtol=1e-6)
    stats, reference = split.idata.sample_stats, whole.idata.sample_stats
    np.testing.assert_array_equal(stats["n_steps"].values, reference["n_steps"].values)


@needs_two_devices
def test_a_collapsed_chain_restarts_from_a_donor_on_another_device():
    """At the end of warm-up the devices share their step sizes and the donor's state."""
    import jax
    import jax.numpy as jnp
    from numpyro.infer.hmc import HMCState
    from numpyro.infer.hmc_util import HMCAdaptState

    chains, size = 4, 2
    z = jnp.arange(chains * size, dtype=float).reshape(chains, size)
    metric = jnp.stack([jnp.eye(size) * (c + 1) for c in range(chains)])
    # chain 3 (second device) collapsed; chain 1 (first device) has the smallest healthy step
    sizes = jnp.array([0.3, 0.1, 0.2, 1e-17])

    def end(z, metric, sizes):
        adapt = HMCAdaptState(sizes, metric, metric, metric, None, None, None, None)
        states = HMCState(*(None,) * 13)._replace(
            z=z, z_grad=-z, potential_energy=sizes, energy=sizes, adapt_state=adapt
        )
        out, collapsed = nuts._end_warmup(states, axis=sharding.CHAIN_AXIS)
        return out.z, out.adapt_state.inverse_mass_matrix, out.adapt_state.step_size, collapsed

    split = jax.jit(sharding._over_chains(end, 2, (True, True, True)))
    new_z, new_metric, new_sizes, collapsed = split(z, metric, sizes)
    np.testing.assert_array_equal(collapsed, [False, False, False, True])
    np.testing.assert_array_equal(new_z, jnp.stack([z[0], z[1], z[2], z[1]]))
    np.testing.assert_array_equal(new_metric[3], metric[1])
    np.testing.assert_array_equal(new_sizes, [0.1] * 4)
