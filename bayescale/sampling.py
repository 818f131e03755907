"""NUTS backends: a hand-built JAX density, numpyro or nutpie on the PyMC model, or PyMC itself.

``backend="auto"`` takes the fastest one that can fit the model: ``"jax"``
(:mod:`bayescale.jax_density` sampled by numpyro, without importing PyMC)
when numpyro is installed and the model is supported, else numpyro, nutpie or
PyMC's own sampler on the PyMC model. Every backend adapts a dense mass
matrix: the law's parameters are correlated (E against the amplitudes) and a
diagonal metric needs several times more leapfrog steps.
"""

from __future__ import annotations

import importlib.util
import os
import threading
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from bayescale.errors import BayescaleError

BACKENDS = ("auto", "jax", "numpyro", "nutpie", "pymc")

#: Environment variable naming the on-disk cache of compiled JAX samplers ("" or "0" turns it off).
CACHE_ENV = "BAYESCALE_CACHE_DIR"

# numpyro keeps its effect handlers on one global stack, so two threads tracing models at
# once corrupt each other's (seen with fit_many on a thread pool): one run at a time per process.
_NUMPYRO_LOCK = threading.Lock()


@dataclass(frozen=True)
class SamplerConfig:
    """How to sample: draws and tuning steps per chain, chains, backend.

    The defaults (4 chains x 1000 draws after 1000 tuning steps) give a bulk
    ESS above 1000 for every parameter of the bundled fits.
    """

    draws: int = 1000
    tune: int = 1000
    chains: int = 4
    backend: str = "auto"
    target_accept: float = 0.95
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("draws", "tune", "chains"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise BayescaleError(f"{name} must be a positive integer, got {value!r}")
        if self.backend not in BACKENDS:
            raise BayescaleError(f"unknown backend {self.backend!r}; use one of {list(BACKENDS)}")
        if not 0 < self.target_accept < 1:
            raise BayescaleError(f"target_accept must be in (0, 1), got {self.target_accept}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (stored in saved fits)."""
        return {
            "draws": self.draws,
            "tune": self.tune,
            "chains": self.chains,
            "backend": self.backend,
            "target_accept": self.target_accept,
        }


def installed(module: str) -> bool:
    """True when ``module`` can be imported."""
    return importlib.util.find_spec(module) is not None


def choose_backend(backend: str) -> str:
    """Resolve ``"auto"`` to the fastest installed backend of the PyMC model; check an explicit one.

    ``"jax"`` (no PyMC model) is chosen by :func:`run`, which knows the model.
    """
    if backend == "auto":
        if installed("numpyro") and installed("jax"):
            return "numpyro"
        if installed("nutpie"):
            return "nutpie"
        return "pymc"
    needs = {"jax": ("numpyro", "jax"), "numpyro": ("numpyro", "jax"), "nutpie": ("nutpie",), "pymc": ()}
    needs = needs[backend]
    missing = [m for m in needs if not installed(m)]
    if missing:
        raise BayescaleError(
            f"backend {backend!r} needs {missing} installed; `pip install bayescale[fast]` "
            "or choose backend='pymc'"
        )
    return backend


def run(
    law: Any,
    runs: Any,
    priors: Mapping[str, Any],
    fixed: Mapping[str, float],
    likelihood: str,
    config: SamplerConfig,
    random_seed: int | None,
    progressbar: bool,
) -> tuple[Any, str]:
    """Sample the posterior of ``law`` on ``runs``: the JAX density when it can, else the PyMC model.

    Returns
    -------
    idata, backend
        An ``arviz.InferenceData`` with ``posterior`` and ``sample_stats``,
        and the name of the backend that sampled it.
    """
    # The JAX fast path is opt-in: on a small, weakly identified ladder one of its chains left
    # for alpha_N ~ 1e100 during warm-up and stayed (r_hat 3.6, no divergence), which the
    # PyMC-model backends do not do. Until that is understood, "auto" samples the PyMC model.
    if config.backend == "jax":
        from bayescale.jax_density import build_density, unsupported

        if installed("numpyro") and installed("jax"):
            reason = unsupported(law, priors, likelihood)
        else:
            reason = "numpyro and jax are not installed (`pip install bayescale[fast]`)"
        if reason is None:
            density = build_density(law, runs, priors, fixed, likelihood)
            return sample_density(density, config, random_seed, progressbar), "jax"
        if config.backend == "jax":
            raise BayescaleError(f"backend 'jax' cannot fit this model: {reason}; use backend='auto'")
    from bayescale.model import build_model

    backend = choose_backend(config.backend)
    model = build_model(law, runs, priors, fixed, likelihood)
    return sample(model, replace(config, backend=backend), random_seed, progressbar), backend


def sample_density(density: Any, config: SamplerConfig, random_seed: int | None, progressbar: bool) -> Any:
    """Sample a :class:`~bayescale.jax_density.Density` with numpyro's NUTS, chains vectorised.

    Starts like PyMC: each chain at the priors' centre jittered by U(-1, 1)
    on the unconstrained scale (redrawn where the density is not finite).

    Returns
    -------
    arviz.InferenceData
        ``posterior`` (every free parameter) and ``sample_stats``.
    """
    jax = setup_jax()
    import jax.numpy as jnp
    import numpyro
    import numpyro.distributions as dist
    from numpyro.infer import MCMC, NUTS

    size = density.size
    data = jax.tree.map(jnp.asarray, density.data)

    def model(data: Any) -> None:
        position = numpyro.sample("position", dist.ImproperUniform(dist.constraints.real_vector, (), (size,)))
        numpyro.factor("logp", density.logp(position, data))

    rng = np.random.default_rng(random_seed)
    laplace = _laplace(density, data)
    options: dict[str, Any] = {"dense_mass": True, "target_accept_prob": config.target_accept}
    if laplace is None:
        init = _jittered_starts(density, data, config.chains, rng)
    else:
        # Start from the Laplace approximation: warm-up then begins with a sensible metric
        # instead of the identity, which cuts its leapfrog steps by about a third.
        mode, cov = laplace
        # Jitter the starts by at most one unit per coordinate: in a weakly identified direction the
        # BFGS inverse Hessian is huge, and a start drawn from it can land where the density is flat
        # (a chain then stays there: seen on a small ladder, alpha_N ~ 1e99).
        scale = np.minimum(np.sqrt(np.diag(cov)), 1.0)
        init = mode + rng.uniform(-1.0, 1.0, (config.chains, density.size)) * scale
        options["inverse_mass_matrix"] = {("position",): jnp.asarray(cov)}
    kernel = NUTS(model, **{**options, **config.extra})
    mcmc = MCMC(
        kernel,
        num_warmup=config.tune,
        num_samples=config.draws,
        num_chains=config.chains,
        chain_method="vectorized",
        progress_bar=progressbar,
    )
    fields = ("diverging", "num_steps", "energy", "accept_prob", "adapt_state.step_size", "potential_energy")
    key = jax.random.PRNGKey(int(rng.integers(2**31)))
    # numpyro wants a leading chain axis on the starts only when there are several chains.
    start = jnp.asarray(init if config.chains > 1 else init[0])
    with _NUMPYRO_LOCK:
        mcmc.run(key, data, init_params={"position": start}, extra_fields=fields)
    position = np.asarray(mcmc.get_samples(group_by_chain=True)["position"])
    extra = {k: np.asarray(v) for k, v in mcmc.get_extra_fields(group_by_chain=True).items()}
    return _to_inference_data(density, position, extra)


def _laplace(density: Any, data: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """Posterior mode and BFGS inverse Hessian there, or ``None`` when the search fails."""
    import jax
    from scipy.optimize import minimize

    value_and_grad = jax.jit(jax.value_and_grad(lambda x, data: -density.logp(x, data)))

    def objective(x: np.ndarray) -> tuple[float, np.ndarray]:
        value, grad = value_and_grad(x, data)
        return float(value), np.asarray(grad)

    with np.errstate(all="ignore"):
        result = minimize(objective, density.initial_point(), jac=True, method="BFGS")
    cov = np.asarray(result.hess_inv)
    if not np.all(np.isfinite(result.x)) or not np.isfinite(result.fun) or not np.all(np.isfinite(cov)):
        return None
    try:
        np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:
        return None
    return result.x, cov


def _jittered_starts(density: Any, data: Any, chains: int, rng: np.random.Generator) -> np.ndarray:
    import jax

    logp = jax.jit(jax.vmap(density.logp, in_axes=(0, None)))
    centre = density.initial_point()
    starts = centre + rng.uniform(-1, 1, size=(chains, density.size))
    for _ in range(10):
        bad = ~np.isfinite(np.asarray(logp(starts, data)))
        if not bad.any():
            break
        starts[bad] = centre + rng.uniform(-1, 1, size=(int(bad.sum()), density.size))
    return starts


def _to_inference_data(density: Any, position: np.ndarray, extra: dict[str, np.ndarray]) -> Any:
    import arviz as az
    import xarray as xr

    chains, draws = position.shape[:2]
    coords = {"chain": np.arange(chains), "draw": np.arange(draws)}
    theta = density.constrain(position)
    dims = ("chain", "draw")
    posterior = xr.Dataset({s.name: (dims, np.asarray(theta[s.name])) for s in density.sites}, coords=coords)
    steps = extra["num_steps"].astype(int)
    stats = xr.Dataset(
        {
            "lp": (dims, -extra["potential_energy"]),
            "diverging": (dims, extra["diverging"].astype(bool)),
            "energy": (dims, extra["energy"]),
            "n_steps": (dims, steps),
            "tree_depth": (dims, np.floor(np.log2(np.maximum(steps, 1))).astype(int) + 1),
            "acceptance_rate": (dims, extra["accept_prob"]),
            "step_size": (dims, extra["adapt_state.step_size"]),
        },
        coords=coords,
    )
    return az.InferenceData(posterior=posterior, sample_stats=stats)


def cache_dir() -> Path | None:
    """Folder of the on-disk JAX compilation cache, or ``None`` when turned off.

    ``$BAYESCALE_CACHE_DIR`` if set (empty or ``0`` turns the cache off), else
    ``$XDG_CACHE_HOME/bayescale/jax`` (``~/.cache/bayescale/jax``).
    """
    env = os.environ.get(CACHE_ENV)
    if env is not None:
        return None if env in ("", "0") else Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "bayescale" / "jax"


def setup_jax() -> Any:
    """Import JAX in 64-bit mode with the persistent compilation cache; return the module.

    A cold process then loads the compiled sampler from disk instead of
    compiling it again (seconds saved on every fit of the same shape).
    """
    os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=1")
    import jax

    jax.config.update("jax_enable_x64", True)
    folder = cache_dir()
    if folder is not None and jax.config.jax_compilation_cache_dir is None:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError:
            return jax  # an unwritable cache only costs compile time
        jax.config.update("jax_compilation_cache_dir", str(folder))
        # Cache every program, even the many small ones numpyro runs eagerly while it
        # initialises the chains: together they cost seconds to compile in a cold process.
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    return jax


def sample(model: Any, config: SamplerConfig, random_seed: int | None, progressbar: bool) -> Any:
    """Sample the PyMC ``model``; return an ``arviz.InferenceData`` with a posterior group."""
    import pymc as pm

    backend = choose_backend(config.backend)
    common = dict(
        model=model,
        draws=config.draws,
        tune=config.tune,
        chains=config.chains,
        random_seed=random_seed,
        progressbar=progressbar,
        compute_convergence_checks=False,
    )
    with warnings.catch_warnings():
        # Our own diagnostics replace PyMC's; its chatter about them is noise here.
        warnings.filterwarnings("ignore", message=".*number of samples is too small.*")
        if backend == "numpyro":
            setup_jax()
            return pm.sample(
                **common,
                nuts_sampler="numpyro",
                target_accept=config.target_accept,
                nuts_sampler_kwargs={
                    "chain_method": "vectorized",
                    "nuts_kwargs": {"dense_mass": True},
                    **config.extra,
                },
            )
        if backend == "nutpie":
            return pm.sample(
                **common,
                nuts_sampler="nutpie",
                target_accept=config.target_accept,
                nuts_sampler_kwargs={"low_rank_modified_mass_matrix": True, **config.extra},
            )
        return pm.sample(
            **common,
            init="jitter+adapt_full",
            target_accept=config.target_accept,
            cores=min(config.chains, os.cpu_count() or 1),
            **config.extra,
        )
