"""The fast path's driver: a :class:`~bayescale.model.jax_density.Density` sampled with NUTS, without PyMC.

The Laplace step, starts, one compiled program (or pieces under a progress bar), and the draws
as an ArviZ tree with the path they took and, for separate modes, each mode's mass.
"""

from __future__ import annotations

import functools
import json
import threading
from typing import Any

import numpy as np

from bayescale.inference import container, modes, programs, sharding
from bayescale.inference import diagnostics as diag
from bayescale.inference.laplace import _laplace, _logp_batch, _near_gaussian
from bayescale.inference.nuts import _compiled_chunks, _compiled_sampler
from bayescale.inference.programs import _program, _program_key, _structure
from bayescale.inference.progress import Progress, on_terminal
from bayescale.inference.settings import SamplerConfig
from bayescale.model.jax_backend import setup_jax

# numpyro keeps its effect handlers on one global stack, so two threads tracing models at
# once corrupt each other's (seen with fit_many on a thread pool): one run at a time per process.
_NUMPYRO_LOCK = threading.Lock()


#: Observations x iterations from which the fast path samples under a progress bar: 1e4 runs
#: at 1000 + 1000 iterations, ~13 s on one core (benchmarks/results/speed.txt).
BAR_WORK = 2e7


#: The attribute of ``sample_stats`` naming the sampler path a fit took (read by the diagnostics).
PATH_ATTR = "sampler_path"


def _with_path(idata: Any, path: str) -> Any:
    """``idata`` with ``path`` recorded as the sampler path that drew it."""
    return _with_attr(idata, PATH_ATTR, path)


def _with_attr(idata: Any, name: str, value: str) -> Any:
    """``idata`` with the attribute ``name`` of its ``sample_stats`` set to ``value``."""
    stats = container.group(idata, "sample_stats")
    stats.attrs[name] = value
    return container.with_group(idata, "sample_stats", stats)


def sample_density(
    density: Any,
    config: SamplerConfig,
    random_seed: int | None,
    progressbar: bool,
    laplace: tuple[np.ndarray, np.ndarray] | None = None,
    scaled_fallback: bool = False,
) -> Any:
    """Sample a :class:`~bayescale.model.jax_density.Density` with numpyro's NUTS, chains vectorised.

    NUTS (numpyro's, dense mass adapted in warm-up) runs on whitened
    coordinates ``u``, with ``position = mode + L u`` and ``L L^T`` the
    inverse Hessian at the posterior mode (the Laplace approximation). There
    the posterior is close to a standard normal whatever the number of runs,
    so warm-up starts from a sensible metric and step size, and the
    dense-mass adaptation is not swamped by numpyro's regularisation towards
    ``1e-3 I`` (on the original coordinates of a 1e5-run fit, posterior
    variances ~1e-6, that cost ~100 leapfrog steps per iteration). Each chain
    starts at ``u ~ U(-1, 1)`` per coordinate, PyMC's jitter on this scale.
    Without a usable mode (the search fails or the Hessian is not positive
    definite) or when the posterior is far from Gaussian
    (:func:`_near_gaussian`), NUTS runs on the original coordinates from the
    priors' centre, jittered the same way. The chains run as one compiled program; with
    ``progressbar``, a fit long enough to want one (:func:`_long_enough_for_a_bar`) runs as
    about 20 calls of a program of fewer iterations under a progress bar, with the same draws.

    ``laplace``, the mode and root of :func:`~bayescale.inference.laplace._laplace` when the
    caller has them already (:func:`~bayescale.inference.run_offsets.offsets_density`), saves
    finding them again. ``scaled_fallback``: a mode far from Gaussian still sets each coordinate's
    centre and scale (not the original coordinates), for densities with coordinates pinned far
    below the mass matrix's regularisation (run offsets pinned by checkpoints).

    Returns
    -------
    xarray.DataTree
        ``posterior`` (every free parameter) and ``sample_stats``.
    """
    jax = setup_jax()
    import jax.numpy as jnp

    say = Progress(progressbar)
    say(f"fast path (JAX density, {density.size} parameters): finding the posterior mode (Laplace step)")
    size = density.size
    data = jax.tree.map(jnp.asarray, density.data)
    rng = np.random.default_rng(random_seed)
    if laplace is None:
        laplace = _laplace(density, data)
    if laplace is not None and scaled_fallback and not _near_gaussian(density, data, *laplace):
        # Far from Gaussian, but with coordinates pinned to ~1e-5 by the data (the level of a law
        # fitted to checkpoints of noise 4e-4): on the original coordinates the mass matrix's
        # regularisation (towards 1e-3 I) swamped them (step size 0.009, 511 steps per draw).
        # Each coordinate centred at the mode and scaled by its sd there; warm-up learns the rest.
        shift, scale = laplace[0], np.diag(np.sqrt(np.sum(laplace[1] ** 2, axis=1)))
        init = shift + rng.uniform(-1.0, 1.0, (config.chains, size)) @ scale.T
        path = "fast path (JAX density), coordinates scaled at the Laplace mode (far from Gaussian)"
        say(f"mode far from Gaussian ({say.lap():.1f} s): sampling coordinates scaled at the mode")
    elif laplace is None or not _near_gaussian(density, data, *laplace):
        shift, scale = np.zeros(size), np.eye(size)
        init = _jittered_starts(density, data, config.chains, rng)
        path = "fast path (JAX density), original coordinates: no usable Gaussian mode"
        say(f"no usable Gaussian mode ({say.lap():.1f} s): sampling the original coordinates")
    else:
        shift, scale = laplace
        init = shift + rng.uniform(-1.0, 1.0, (config.chains, size)) @ scale.T
        path = "fast path (JAX density), coordinates whitened at the Laplace mode"
        say(f"mode found ({say.lap():.1f} s): sampling in coordinates whitened at the mode")
    start = np.linalg.solve(scale, (init - shift).T).T
    keys = jax.random.split(jax.random.PRNGKey(int(rng.integers(2**31))), config.chains)
    args = (keys, jnp.asarray(start), jnp.asarray(shift), jnp.asarray(scale), data)
    work = f"{config.chains} chains x ({config.tune} warm-up + {config.draws} draws)"
    with _NUMPYRO_LOCK:
        if progressbar and _long_enough_for_a_bar(density, config):
            say(f"NUTS, {work}, in pieces under a progress bar")
            u, extra = _sample_in_chunks(density, config, args)
        else:
            key = _sampler_key(density, config, args, "nuts")
            cached = key is not None and key in programs.loaded()
            say(f"preparing the sampler ({'in memory' if cached else 'from the cache, or traced if new'})")
            program = _program(functools.partial(_compiled_sampler, density, config), key, args)
            say(f"sampler ready ({say.lap():.1f} s); NUTS warm-up and sampling, {work}, as one program")
            u, extra = program(*args)
    u = np.asarray(u)
    extra = {k: np.asarray(v) for k, v in extra.items()}
    say(f"sampled ({say.lap():.1f} s): {int(extra['diverging'].sum())} divergent transitions")
    position = shift + u @ scale.T
    idata = _with_path(_to_inference_data(density, position, extra), path)
    groups = modes.mode_groups(position, functools.partial(diag.separate_modes, log_positive=False))
    if not groups:
        return idata
    say(f"chains in {len(groups)} separate modes: weighing them by importance sampling")

    def log_density(points: np.ndarray) -> np.ndarray:
        return np.asarray(_logp_batch(density, points, data)(points, data))

    masses = modes.mode_masses(log_density, position, groups, rng)
    recorded = None if masses is None else [m.to_dict() for m in masses]
    return _with_attr(idata, diag.MODE_MASS_ATTR, json.dumps(recorded))


def _sampler_key(density: Any, config: SamplerConfig, args: tuple[Any, ...], *program: Any) -> str | None:
    """:func:`_program_key` of a sampler program (``program``: its name and any settings of its own).

    ``None`` with ``config.extra``: numpyro options are not keyed, so such a program is never exported.
    """
    if config.extra:
        return None
    settings = (
        config.tune,
        config.draws,
        config.chains,
        config.target_accept,
        sharding.chain_shards(config.chains),
    )
    return _program_key(_structure(density), args, *program, *settings)


def _long_enough_for_a_bar(density: Any, config: SamplerConfig) -> bool:
    """Whether observations x iterations reach :data:`BAR_WORK` (a fit of ~15 s or more).

    Shorter fits run as one program: sampling in pieces costs a second compiled program
    the first time a shape is fitted, for a bar that would be gone in a second or two.
    """
    import jax

    observations = max(np.size(a) for a in jax.tree.leaves(density.data))
    return observations * (config.tune + config.draws) >= BAR_WORK


def _chunk_length(total: int, pieces: int = 20) -> int:
    """The smallest divisor of ``total`` iterations that is at least ``total / pieces``."""
    return next(n for n in range(max(1, -(-total // pieces)), total + 1) if total % n == 0)


def _sample_in_chunks(
    density: Any, config: SamplerConfig, args: tuple[Any, ...]
) -> tuple[Any, dict[str, Any]]:
    """What the program of :func:`_compiled_sampler` returns, computed piece by piece under a progress bar."""
    import jax
    import jax.numpy as jnp
    from tqdm import tqdm

    total = config.tune + config.draws
    length = _chunk_length(total)
    build_init, build_advance = _compiled_chunks(density, config, length)
    init = _program(lambda: build_init, _sampler_key(density, config, args, "nuts-init", length), args)
    _, _, shift, scale, data = args
    leaves = init(*args)
    restarted = jnp.zeros(config.chains, dtype=bool)
    step_args = (leaves, restarted, jnp.asarray(0), shift, scale, data)
    key = _sampler_key(density, config, step_args, "nuts-advance", length)
    advance = _program(lambda: build_advance, key, step_args)
    pieces, divergences = [], 0
    terminal = on_terminal()
    # Off a terminal, a line at the end of warm-up stands in for the bar.
    say, warming = Progress(not terminal), config.tune > 0
    desc = f"NUTS, {config.chains} chains, warm-up"
    with tqdm(total=total, desc=desc, unit="it", leave=False, disable=not terminal) as bar:
        for first in range(0, total, length):
            leaves, restarted, positions, fields = advance(
                leaves, restarted, jnp.asarray(first), shift, scale, data
            )
            if warming and first + length >= config.tune:
                say(f"warm-up done ({say.lap():.1f} s): {config.draws} draws per chain to go")
                warming = False
            # keep the draws only (a piece may straddle the end of warm-up)
            warmup = max(0, config.tune - first)
            drawn = jax.tree.map(lambda a, skip=warmup: a[skip:], (positions, fields))
            if drawn[0].shape[0]:
                pieces.append(drawn)
                divergences += int(np.asarray(drawn[1]["diverging"]).sum())
                bar.set_description(f"NUTS, {config.chains} chains, sampling", refresh=False)
                bar.set_postfix(divergences=divergences, refresh=False)
            bar.update(length)
    out = jax.tree.map(lambda *parts: jnp.concatenate(parts), *pieces)
    return jax.tree.map(lambda a: jnp.swapaxes(a, 0, 1), out)


def _jittered_starts(density: Any, data: Any, chains: int, rng: np.random.Generator) -> np.ndarray:
    centre = density.initial_point()
    starts = centre + rng.uniform(-1, 1, size=(chains, density.size))
    logp = _logp_batch(density, starts, data)
    for _ in range(10):
        bad = ~np.isfinite(np.asarray(logp(starts, data)))
        if not bad.any():
            break
        starts[bad] = centre + rng.uniform(-1, 1, size=(int(bad.sum()), density.size))
    return starts


def _to_inference_data(density: Any, position: np.ndarray, extra: dict[str, np.ndarray]) -> Any:
    """The fast path's draws as ArviZ's ``from_dict`` makes them: ``posterior`` and ``sample_stats``."""
    from arviz_base import from_dict

    theta = density.constrain(position)
    steps = extra["num_steps"].astype(int)
    stats = {
        "lp": -extra["potential_energy"],
        "diverging": extra["diverging"].astype(bool),
        "energy": extra["energy"],
        "n_steps": steps,
        "tree_depth": np.floor(np.log2(np.maximum(steps, 1))).astype(int) + 1,
        "acceptance_rate": extra["accept_prob"],
        "step_size": extra["adapt_state.step_size"],
        "restarted": extra["restarted"].astype(bool),
    }
    posterior = {s.name: np.asarray(theta[s.name]) for s in density.sites}
    return container.to_tree(from_dict({"posterior": posterior, "sample_stats": stats}))
