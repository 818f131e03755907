"""NUTS backends: a hand-built JAX density, numpyro or nutpie on the PyMC model, or PyMC itself.

``backend="auto"`` takes the fastest one that can fit the model: ``"jax"``
(:mod:`bayescale.model.jax_density` sampled by numpyro, without importing PyMC)
when numpyro is installed and the model is supported, else numpyro, nutpie or
PyMC's own sampler on the PyMC model. Every backend adapts a dense mass
matrix: the law's parameters are correlated (E against the amplitudes) and a
diagonal metric needs several times more leapfrog steps.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import os
import secrets
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from bayescale.errors import BayescaleError
from bayescale.inference import container, modes
from bayescale.inference import diagnostics as diag
from bayescale.inference.geometry import reparametrise
from bayescale.inference.progress import Progress, on_terminal
from bayescale.model.jax_backend import cache_dir, setup_jax
from bayescale.model.jax_density import build_density, unsupported
from bayescale.model.pymc_model import build_model, run_labels

BACKENDS = ("auto", "jax", "numpyro", "nutpie", "pymc")

#: Seeds drawn for a fit given none lie in [0, SEED_RANGE): an int32, which every backend takes.
SEED_RANGE = 2**31

# numpyro keeps its effect handlers on one global stack, so two threads tracing models at
# once corrupt each other's (seen with fit_many on a thread pool): one run at a time per process.
_NUMPYRO_LOCK = threading.Lock()

#: A chain whose adapted step size is below this fraction of the chains' median collapsed in warm-up.
_COLLAPSED_STEP = 1e-3

#: Observations x iterations from which the fast path samples under a progress bar: 1e4 runs
#: at 1000 + 1000 iterations, ~13 s on one core (benchmarks/results/speed.txt).
BAR_WORK = 2e7

#: How many compiled programs stay loaded in a process. Each holds its machine code in a few
#: hundred memory maps (~340 for the fast path's NUTS program), and Linux gives a process 65530
#: maps (``vm.max_map_count``): past that the next compilation crashes the process, which a
#: process fitting ~40 new shapes reached when no program was ever let go. A new shape loads
#: 4-5 programs, so the last few shapes fitted stay loaded (at most ~10,000 maps).
PROGRAMS_KEPT = 24

# Compiled programs loaded in this process, by _program_key, the most recently used last.
_PROGRAMS: OrderedDict[str, Any] = OrderedDict()


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


#: The settings a sampler configuration holds, and each one's default (a method overrides some:
#: each declares its own ``SAMPLER_DEFAULTS`` built from this).
SAMPLER_DEFAULTS: dict[str, Any] = {
    "draws": 1000,
    "tune": 1000,
    "chains": 4,
    "backend": "auto",
    "target_accept": 0.95,
}

#: What every fitting method accepts as ``sampler=``: a complete :class:`SamplerConfig`, or a
#: mapping of some of :data:`SAMPLER_DEFAULTS`' keys (the rest from the method's defaults).
type SamplerSettings = SamplerConfig | Mapping[str, Any]


def resolve_sampler(defaults: Mapping[str, Any], sampler: SamplerSettings | None = None) -> SamplerConfig:
    """The one way every method turns its sampler settings into a :class:`SamplerConfig`.

    Later sources override earlier ones: the method's ``defaults``, then ``sampler``
    (a :class:`SamplerConfig` gives every setting, a mapping some).

    Raises
    ------
    BayescaleError
        For a mapping key that is not a sampler setting, or a bad value.
    """
    settings = dict(defaults)
    extra: dict[str, Any] = {}
    if isinstance(sampler, SamplerConfig):
        settings.update(sampler.to_dict())
        extra = dict(sampler.extra)
    elif isinstance(sampler, Mapping):
        unknown = sorted(set(sampler) - set(SAMPLER_DEFAULTS) - {"extra"})
        if unknown:
            raise BayescaleError(
                f"unknown sampler setting(s) {unknown}; use some of {list(SAMPLER_DEFAULTS)}"
            )
        settings.update({k: v for k, v in sampler.items() if k != "extra"})
        extra = dict(sampler.get("extra") or {})
    elif sampler is not None:
        raise BayescaleError(
            f"sampler must be a SamplerConfig or a mapping of settings, got {type(sampler).__name__}"
        )
    return SamplerConfig(**settings, extra=extra)


def fold_sampler_keywords(
    sampler: SamplerSettings | None, keywords: Mapping[str, Any], caller: str
) -> SamplerSettings | None:
    """``sampler`` with the deprecated ``draws=``, ``tune=``, ... keywords of ``caller`` folded in.

    The keywords that are not ``None`` override ``sampler``'s settings, as they did when they
    were the way to give them; giving any emits a :class:`DeprecationWarning` that shows
    the ``sampler=`` mapping to write instead. Removed in the next release.

    Raises
    ------
    TypeError
        For a keyword that is not a sampler setting, as Python does for an unknown keyword.
    """
    unknown = sorted(set(keywords) - set(SAMPLER_DEFAULTS))
    if unknown:
        raise TypeError(f"{caller}() got unexpected keyword argument(s) {unknown}")
    given = {k: v for k, v in keywords.items() if v is not None}
    if not given:
        return sampler
    warnings.warn(
        f"{caller}: the keywords {', '.join(f'{k}=' for k in given)} are deprecated and will be removed "
        f"in the next release; pass sampler={given!r}",
        DeprecationWarning,
        stacklevel=3,
    )
    if isinstance(sampler, SamplerConfig):
        return SamplerConfig(**{**sampler.to_dict(), **given}, extra=dict(sampler.extra))
    if sampler is not None and not isinstance(sampler, Mapping):
        return sampler  # not settings at all: resolve_sampler says so
    return {**(sampler or {}), **given}


def installed(module: str) -> bool:
    """True when ``module`` can be imported."""
    return importlib.util.find_spec(module) is not None


def choose_backend(backend: str) -> str:
    """Resolve ``"auto"`` to the fastest installed backend of the PyMC model; check an explicit one.

    ``"jax"`` (no PyMC model) is chosen by :func:`run`, which knows the model:
    this is the fallback when the JAX density cannot represent it.
    """
    if backend == "auto":
        if installed("numpyro") and installed("jax"):
            return "numpyro"
        if installed("nutpie"):
            return "nutpie"
        return "pymc"
    modules = {"jax": ("numpyro", "jax"), "numpyro": ("numpyro", "jax"), "nutpie": ("nutpie",), "pymc": ()}
    missing = [m for m in modules[backend] if not installed(m)]
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
        An ``xarray.DataTree`` with ``posterior`` and ``sample_stats`` groups,
        and the name of the backend that sampled it.
    """
    # "auto" takes the JAX fast path whenever it can represent the model: on 20 simulated 40-run
    # ladders and the bundled fits it mixed at least as well as numpyro on the PyMC model (see
    # benchmarks/compare_backends.py and the README's speed section) in a fraction of the time.
    if config.backend in ("auto", "jax"):
        if installed("numpyro") and installed("jax"):
            reason = unsupported(law, priors, likelihood)
            if reason is None and run_labels(runs) is not None:
                reason = "runs with checkpoints (a run column) have per-run offsets, not in the JAX density"
        else:
            reason = "numpyro and jax are not installed (`pip install bayescale[fast]`)"
        if reason is None:
            density = reparametrise(build_density(law, runs, priors, fixed, likelihood))
            return sample_density(density, config, random_seed, progressbar), "jax"
        if config.backend == "jax":
            raise BayescaleError(f"backend 'jax' cannot fit this model: {reason}; use backend='auto'")
    else:
        reason = f"backend {config.backend!r} asked for"

    backend = choose_backend(config.backend)
    model = build_model(law, runs, priors, fixed, likelihood)
    idata = sample(model, replace(config, backend=backend), random_seed, progressbar)
    return _with_path(idata, f"PyMC model with {backend} (not the fast path: {reason})"), backend


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


def sample_density(density: Any, config: SamplerConfig, random_seed: int | None, progressbar: bool) -> Any:
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
    laplace = _laplace(density, data)
    if laplace is None or not _near_gaussian(density, data, *laplace):
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
            cached = key is not None and key in _PROGRAMS
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
    settings = (config.tune, config.draws, config.chains, config.target_accept, chain_shards(config.chains))
    return _program_key(_structure(density), args, *program, *settings)


def _collapsed(sizes: Any, xp: Any = np) -> Any:
    """Chains whose adapted step size is below ``1e-3`` of the chains' median: stuck in warm-up."""
    return sizes < _COLLAPSED_STEP * xp.median(sizes)


def _smallest_healthy(sizes: Any, xp: Any = np) -> Any:
    """Index of the chain with the smallest adapted step size among those that did not collapse."""
    return xp.argmin(xp.where(_collapsed(sizes, xp), xp.inf, sizes))


def shared_step_size(sizes: Any, xp: Any = np) -> Any:
    """The step size every chain keeps after warm-up: the smallest among chains that did not collapse.

    A chain whose warm-up collapsed (:func:`_collapsed`; seen in SBC: step
    size 3e-17 at sigma, nu ~ 0) does not set the pace, or it would freeze
    the healthy chains too.
    """
    return sizes[_smallest_healthy(sizes, xp)]


def _end_warmup(states: Any, axis: str | None = None) -> tuple[Any, Any]:
    """Every chain takes the :func:`shared_step_size`; a collapsed chain restarts from its donor.

    The donor is the healthy chain with the smallest step: a collapsed chain
    takes its position and adapted metric. Starting the draws from another
    chain's adapted state is a valid initialisation (each chain keeps its own
    random key from there); the chain is reported in
    ``sample_stats["restarted"]`` and the fit's diagnostics, since it no
    longer starts independently of the others. With the chains split over
    devices (``axis``, the mesh axis of :func:`_over_chains`), every device
    sees every chain's step size and the donor's state. Returns the states
    and which of them collapsed.
    """
    import jax
    import jax.numpy as jnp

    local = states.adapt_state.step_size
    if axis is None:
        mine = jnp.arange(local.shape[0])

        def gather(x: Any) -> Any:
            return x
    else:
        mine = jax.lax.axis_index(axis) * local.shape[0] + jnp.arange(local.shape[0])

        def gather(x: Any) -> Any:
            return jax.lax.all_gather(x, axis, tiled=True)

    sizes = gather(local)
    collapsed = _collapsed(sizes, jnp)[mine]
    donor = _smallest_healthy(sizes, jnp)

    def take(x: Any) -> Any:
        mask = collapsed.reshape((-1,) + (1,) * (x.ndim - 1))
        return jnp.where(mask, gather(x)[donor], x)

    adapt = states.adapt_state
    adapt = adapt._replace(
        step_size=jnp.full_like(local, sizes[donor]),
        inverse_mass_matrix=take(adapt.inverse_mass_matrix),
        mass_matrix_sqrt=take(adapt.mass_matrix_sqrt),
        mass_matrix_sqrt_inv=take(adapt.mass_matrix_sqrt_inv),
    )
    states = states._replace(
        z=take(states.z),
        z_grad=take(states.z_grad),
        potential_energy=take(states.potential_energy),
        energy=take(states.energy),
        adapt_state=adapt,
    )
    return states, collapsed


#: The name of the mesh axis over which the sampler splits its chains.
CHAIN_AXIS = "chain"


def chain_shards(chains: int) -> int:
    """Devices the sampler splits ``chains`` over: the most, up to JAX's CPU devices, that divide them."""
    import jax

    devices = min(jax.local_device_count(), chains)
    return max(k for k in range(1, devices + 1) if chains % k == 0)


def _chain_mesh(shards: int) -> Any:
    import jax

    return jax.make_mesh((shards,), (CHAIN_AXIS,), axis_types=(jax.sharding.AxisType.Auto,))


def _over_chains(function: Any, shards: int, split: Sequence[bool], out_specs: Any = None) -> Any:
    """``function`` jitted, each device running its share of the chains (``shards`` of them).

    ``split`` says which arguments have the chains on their first axis (split
    over the devices; the others are copied to each); the results have them on
    their first axis too unless ``out_specs`` (partition specs) says otherwise.
    Devices run their chains independently: only the end of warm-up
    (:func:`_end_warmup`) exchanges step sizes. Each chain's arithmetic is
    that of one device but for rounding (a smaller batch), which NUTS's
    trajectories can amplify: a fit's draws depend on the number of devices
    as they do on the machine, and are the same for a seed on one machine.
    """
    import jax

    if shards == 1:
        return jax.jit(function)
    from jax.sharding import NamedSharding, PartitionSpec

    mesh = _chain_mesh(shards)
    chains, whole = PartitionSpec(CHAIN_AXIS), PartitionSpec()
    out_specs = chains if out_specs is None else out_specs
    mapped = jax.shard_map(
        function,
        mesh=mesh,
        in_specs=tuple(chains if s else whole for s in split),
        out_specs=out_specs,
        check_vma=False,
    )
    in_shardings = tuple(NamedSharding(mesh, chains if s else whole) for s in split)
    out_shardings = jax.tree.map(lambda spec: NamedSharding(mesh, spec), out_specs)
    return jax.jit(mapped, in_shardings=in_shardings, out_shardings=out_shardings)


def _placed(program: Any) -> Any:
    """``jax.export`` program's call, jitted; a program over several devices gets its arguments placed."""
    import jax

    call = jax.jit(program.call)
    if program.nr_devices == 1:
        return call
    shardings = program.in_shardings_jax(_chain_mesh(program.nr_devices))

    def placed_call(*args: Any) -> Any:
        leaves, tree = jax.tree.flatten(args)
        placed = [jax.device_put(x, s) for x, s in zip(leaves, shardings, strict=True)]
        return call(*jax.tree.unflatten(tree, placed))

    return placed_call


def _nuts(density: Any, config: SamplerConfig, axis: str | None = None) -> tuple[Any, Any]:
    """NUTS (numpyro's) on ``density`` in whitened coordinates: ``(init, advance)``, chains vectorised.

    ``init(keys, starts, shift, scale, data)`` gives every chain's initial state;
    ``advance(states, restarted, indices, shift, scale, data)`` runs the iterations
    ``indices`` (warm-up while an index is below ``config.tune``) and returns the new carry
    ``(states, restarted)`` and each iteration's ``(positions, fields)``. numpyro's
    functional NUTS (``numpyro.infer.hmc.hmc``) on a potential function instead of its
    ``MCMC`` class on a model: no model tracing, no dozens of small eagerly compiled
    programs while chains initialise. Options of ``config.extra`` go to numpyro's
    ``init_kernel``. ``init`` must be traced before ``advance``: numpyro's ``init_kernel``
    sets up what its ``sample_kernel`` uses. ``axis`` names the mesh axis when the chains are
    split over devices (:func:`_over_chains`).
    """
    import jax
    import jax.numpy as jnp
    from numpyro.infer.hmc import hmc

    def potential(shift: Any, scale: Any, data: Any) -> Any:
        return lambda u: -density.logp(shift + scale @ u, data)

    init_kernel, sample_kernel = hmc(potential_fn_gen=potential, kinetic_fn=_kinetic_energy(), algo="NUTS")
    options = {"dense_mass": True, "target_accept_prob": config.target_accept, **config.extra}

    def init(keys: Any, starts: Any, shift: Any, scale: Any, data: Any) -> Any:
        args = (shift, scale, data)
        return jax.vmap(lambda key, u: init_kernel(u, config.tune, model_args=args, rng_key=key, **options))(
            keys, starts
        )

    def advance(states: Any, restarted: Any, indices: Any, shift: Any, scale: Any, data: Any) -> Any:
        args = (shift, scale, data)
        kernel = jax.vmap(lambda state: sample_kernel(state, model_args=args))

        def step(carry: Any, i: Any) -> tuple[Any, tuple[Any, dict[str, Any]]]:
            states, restarted = carry
            states = kernel(states)
            # After warm-up every chain keeps the smallest adapted step size: one that adapted
            # in the bulk can take too long a step in the tail (seen: all 7 divergences of a
            # recovery fit in the one chain whose step size was 0.22 where the others had
            # 0.13-0.16). Any step size fixed after warm-up leaves the posterior invariant.
            # Measured on 20 simulated 40-run ladders at the defaults: shared, 0 divergences
            # and lowest min ESS 968; per chain, 2 divergences and lowest min ESS 505, for
            # ~25% fewer gradients. Sharing does not slow mixing per draw.
            end_of_warmup = i == config.tune - 1
            states, collapsed = jax.lax.cond(
                end_of_warmup,
                functools.partial(_end_warmup, axis=axis),
                lambda s: (s, jnp.zeros(s.adapt_state.step_size.shape, dtype=bool)),
                states,
            )
            restarted = restarted | collapsed
            size = states.adapt_state.step_size
            fields = {
                "diverging": states.diverging,
                "num_steps": states.num_steps,
                "energy": states.energy,
                "accept_prob": states.accept_prob,
                "adapt_state.step_size": size,
                "potential_energy": states.potential_energy,
                "restarted": restarted,
            }
            return (states, restarted), (states.z, fields)

        return jax.lax.scan(step, (states, restarted), indices)

    return init, advance


#: Which of a sampling program's arguments ``(keys, starts, shift, scale, data)`` have the chains
#: on their first axis (split over the devices); the advance program adds ``first`` after ``restarted``.
_CHAINS_FIRST = (True, True, False, False, False)


def _sharded_nuts(density: Any, config: SamplerConfig) -> tuple[int, Any, Any]:
    """``(shards, init, advance)``: the chains' number of shards and :func:`_nuts` for them."""
    shards = chain_shards(config.chains)
    return (shards, *_nuts(density, config, CHAIN_AXIS if shards > 1 else None))


def _compiled_sampler(density: Any, config: SamplerConfig) -> Any:
    """One jitted program that runs every chain's warm-up and draws (chains vectorised).

    One scan over warm-up and draws (the kernel adapts while ``state.i < tune``): tracing
    numpyro's NUTS is most of a cold fit's time, and a second scan would trace it again, so
    a cold process compiles (or loads from the on-disk cache) one program.
    """
    import jax
    import jax.numpy as jnp

    shards, init, advance = _sharded_nuts(density, config)

    def chains(keys: Any, starts: Any, shift: Any, scale: Any, data: Any) -> tuple[Any, dict[str, Any]]:
        states = init(keys, starts, shift, scale, data)
        restarted = jnp.zeros(keys.shape[0], dtype=bool)
        _, out = advance(states, restarted, jnp.arange(config.tune + config.draws), shift, scale, data)
        return jax.tree.map(lambda a: jnp.swapaxes(a[config.tune :], 0, 1), out)

    return _over_chains(chains, shards, _CHAINS_FIRST)


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


def _compiled_chunks(density: Any, config: SamplerConfig, length: int) -> tuple[Any, Any]:
    """``(init, advance)`` programs for sampling in pieces of ``length`` iterations (a progress bar).

    ``init(keys, starts, shift, scale, data)`` gives the chains' states as a flat list of
    arrays (an exported program takes lists, not numpyro's named tuples);
    ``advance(leaves, restarted, first, shift, scale, data)`` runs iterations ``first`` to
    ``first + length - 1`` and returns ``(leaves, restarted, positions, fields)``. The
    iterations are the ones of :func:`_compiled_sampler`, so the draws are too.
    """
    import jax
    import jax.numpy as jnp
    from jax.sharding import PartitionSpec

    shards, init, advance = _sharded_nuts(density, config)

    def init_leaves(keys: Any, starts: Any, shift: Any, scale: Any, data: Any) -> list[Any]:
        return jax.tree.leaves(init(keys, starts, shift, scale, data))

    def advance_leaves(leaves: Any, restarted: Any, first: Any, shift: Any, scale: Any, data: Any) -> Any:
        # The states' structure, from tracing init (which also sets up numpyro's sample_kernel).
        shapes = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), (shift, scale, data))
        keys = jax.ShapeDtypeStruct((config.chains, 2), jnp.uint32)
        starts = jax.ShapeDtypeStruct((config.chains, density.size), shift.dtype)
        tree = jax.tree.structure(jax.eval_shape(init, keys, starts, *shapes))
        states = jax.tree.unflatten(tree, leaves)
        indices = first + jnp.arange(length)
        (states, restarted), (positions, fields) = advance(states, restarted, indices, shift, scale, data)
        return jax.tree.leaves(states), restarted, positions, fields

    # Each iteration's positions and fields have the chains on their second axis.
    by_iteration = PartitionSpec(None, CHAIN_AXIS)
    out_specs = (PartitionSpec(CHAIN_AXIS), PartitionSpec(CHAIN_AXIS), by_iteration, by_iteration)
    return (
        _over_chains(init_leaves, shards, _CHAINS_FIRST),
        _over_chains(advance_leaves, shards, (True, True, False, *_CHAINS_FIRST[2:]), out_specs),
    )


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


def _source_files() -> list[Path]:
    """Every Python file of the bayescale package, in a fixed order."""
    package = Path(__file__).resolve().parent.parent
    return sorted(package.rglob("*.py"), key=lambda path: path.relative_to(package).as_posix())


@functools.cache
def _source_digest() -> bytes:
    """Hash of bayescale's own source, every module of the package.

    A changed law, prior, likelihood or method's model is then a new program, never a stale
    one from the cache (not only this layer's folder: the sampler does not write the model).
    """
    digest = hashlib.sha256()
    for path in _source_files():
        digest.update(path.read_bytes())
    return digest.digest()


def _structure(density: Any) -> tuple[Any, ...]:
    """What a program of ``density`` bakes in as constants: law, priors, fixed values, likelihood.

    (The sites carry the priors. The runs, padded to a bucket of rows, their reference points and the
    reaches of the level-and-drops map are arguments: every ladder of a bucket shares the programs.)
    """
    return (
        type(density.law).__qualname__,
        density.law.name,
        density.likelihood,
        density.sites,
        density.fixed,
        getattr(density, "geometry", None),
    )


def _program_key(structure: tuple[Any, ...], args: tuple[Any, ...], *settings: Any) -> str:
    """Hash of everything a compiled program depends on.

    ``structure`` (the model's constants baked into the program, e.g.
    :func:`_structure` of a density), ``settings`` (which program, and the
    sampler's settings for the sampler), the shapes of the arguments, the
    versions of jax and numpyro and the source of bayescale itself.
    """
    import jax
    import numpyro

    shapes = [(a.shape, str(a.dtype)) for a in jax.tree.leaves(args)]
    parts = (*structure, settings, shapes, jax.__version__, numpyro.__version__)
    digest = hashlib.sha256(_source_digest())
    digest.update(repr(parts).encode())
    return digest.hexdigest()


def _program(build: Callable[[], Any], key: str | None, args: tuple[Any, ...]) -> Any:
    """The jitted program ``build()``, or its ``jax.export`` kept in the cache folder, for ``args``.

    Tracing numpyro's vectorised NUTS takes seconds of Python in every new
    process, and tracing the density's gradient and Hessian for the Laplace
    step a few tenths; the exported program skips that (its compilation is
    then found in JAX's persistent compilation cache). A missing, stale or
    unreadable export is rebuilt. The last :data:`PROGRAMS_KEPT` programs
    used stay loaded, so repeated fits of one shape skip even the loading.
    ``build`` is called only when the program is not cached, and outside
    any trace (a caller may do costly work there, such as converting a PyMC
    model to JAX: done while tracing, its constants broke a second export).
    """
    from jax import export

    folder = cache_dir()
    if key is None or folder is None:
        return build()
    loaded = _recall(key)
    if loaded is not None:
        return loaded
    path = folder / "exported" / f"{key}.bin"
    try:
        program = export.deserialize(bytearray(path.read_bytes()))
    except Exception:  # missing, corrupt, or from another jax: rebuild it
        program = None
    if program is None:
        jitted = build()
        program = export.export(jitted)(*args)
        try:
            blob = program.serialize()
        except ImportError:  # serialisation needs flatbuffers (in the `fast` extra)
            return _keep(key, jitted)  # not saved, but not traced and exported again in this process
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_suffix(f".{os.getpid()}.tmp")
            partial.write_bytes(blob)
            partial.replace(path)  # atomic: concurrent fits never read half a file
        except OSError:
            pass  # an unwritable cache only costs tracing time
    return _keep(key, _placed(program))


def _recall(key: str) -> Any:
    """The program loaded under ``key`` (now the most recently used), or ``None``."""
    program = _PROGRAMS.get(key)
    if program is not None:
        _PROGRAMS.move_to_end(key)
    return program


def _keep(key: str, program: Any) -> Any:
    """Keep ``program`` loaded under ``key`` and return it.

    Beyond :data:`PROGRAMS_KEPT` the least recently used program is let go (its machine
    code is freed once nothing else holds it).
    """
    _PROGRAMS[key] = program
    _PROGRAMS.move_to_end(key)
    while len(_PROGRAMS) > PROGRAMS_KEPT:
        _PROGRAMS.popitem(last=False)
    return program


def _cached_program(
    structure: tuple[Any, ...], name: str, build: Callable[[], Any], args: tuple[Any, ...]
) -> Any:
    """The function ``build()``, jitted, through :func:`_program` under :func:`_program_key`.

    ``build`` runs only when the program is not cached.
    """
    import jax

    return _program(lambda: jax.jit(build()), _program_key(structure, args, name), args)


def _exported(build: Callable[[], Any], key: str | None, args: tuple[Any, ...]) -> Any:
    """``build()(*args)`` through :func:`_program`."""
    return _program(build, key, args)(*args)


def _near_gaussian(
    density: Any, data: Any, mode: np.ndarray, root: np.ndarray, reach: float = 2.0, factor: float = 2.0
) -> bool:
    """Whether the log density falls like its Laplace approximation ``reach`` sds out along each axis.

    The Gaussian predicts a fall of ``reach**2 / 2 = 2``; each of the ``2 d``
    falls must be within ``factor`` of it. NUTS gains from whitened
    coordinates when the posterior is close to Gaussian (many runs), but on
    a small, weakly identified ladder (a banana the curvature at the mode
    misjudges) warm-up from the mode mixed worse than the PyMC default of
    original coordinates and starts jittered around the priors' centre
    (measured, QUICK settings: r_hat 1.34 against 1.01 on one such ladder).
    Measured largest falls: 46-490 on 20-run ladders and 8-13 on the 40-run
    recovery ladders (not whitened: whitened, a 40-run QUICK fit had bulk
    ESS 28 against 216), 3.2 on the Chinchilla runs, 3.0 on 1e3 and 2.0 on
    1e5 simulated runs (whitened).
    """
    points = np.vstack([mode, mode + reach * np.concatenate([root.T, -root.T])])
    values = np.asarray(_logp_batch(density, points, data)(points, data))
    falls = values[0] - values[1:]
    expected = reach**2 / 2
    return bool(
        np.all(np.isfinite(falls)) and np.all((falls > expected / factor) & (falls < expected * factor))
    )


def _logp_batch(density: Any, points: np.ndarray, data: Any) -> Any:
    """The program ``(points, data) -> log density at each row of points``, through the cache."""
    import jax

    return _cached_program(
        _structure(density), "logp_batch", lambda: jax.vmap(density.logp, in_axes=(0, None)), (points, data)
    )


def _kinetic_energy() -> Any:
    """The Euclidean kinetic energy of numpyro, with an overflow counted as a divergence.

    A leapfrog step from a point with a steep gradient (a start off the
    posterior's ridge, a step size still too large early in warm-up) can
    land where the log density is finite but astronomically low (-1e227) and
    the momentum about 1e227. numpyro's ``0.5 * r.M^-1.r`` then overflows,
    and the sum of terms of both signs can come out as ``-inf``: the step
    looks like an infinite energy gain, NUTS accepts it with probability 1
    and does not flag a divergence (only NaN is mapped to ``+inf``). The
    chain is then stranded there (seen: alpha_N ~ 1e100, r_hat 3.6). A
    positive quadratic form that is not finite is ``+inf``: the step is
    divergent and rejected, as it should be.
    """
    import jax.numpy as jnp
    from numpyro.infer.hmc_util import euclidean_kinetic_energy

    def kinetic_energy(inverse_mass_matrix: Any, r: Any) -> Any:
        energy = euclidean_kinetic_energy(inverse_mass_matrix, r)
        return jnp.where(jnp.isfinite(energy), energy, jnp.inf)

    # Its gradient is the plain one (M^-1 r), which numpyro looks up on the function.
    kinetic_energy._kinetic_grad = euclidean_kinetic_energy._kinetic_grad  # type: ignore[attr-defined]
    return kinetic_energy


def mode_and_root(
    value_and_grad: Callable[[np.ndarray], tuple[Any, Any]],
    hessian: Callable[[np.ndarray], Any],
    start: np.ndarray,
    methods: Sequence[str] = ("BFGS",),
) -> tuple[np.ndarray, np.ndarray] | None:
    """Posterior mode and the whitening root ``L`` (``L L^T`` the inverse Hessian there), or ``None``.

    Minimises the negative log density from ``start`` with scipy, each of
    ``methods`` in turn (``"trust-ncg"`` uses ``hessian``) until one ends at
    a finite point where the Hessian is positive definite.

    Parameters
    ----------
    value_and_grad
        ``x -> (-log p(x), its gradient)``.
    hessian
        ``x -> the Hessian of -log p at x``: the exact one (BFGS's running
        estimate is poor in weakly identified directions).
    start
        Where the search starts.
    methods
        ``scipy.optimize.minimize`` methods to try in order.

    Returns
    -------
    (mode, root) or None
        ``None`` when every search fails or its Hessian is not positive
        definite (a mode on a ridge).
    """
    from scipy.optimize import minimize

    def objective(x: np.ndarray) -> tuple[float, np.ndarray]:
        value, grad = value_and_grad(x)
        value, grad = float(value), np.asarray(grad)
        # a step into overflow is a step to reject: +inf makes the line search or trust region shrink
        if np.isfinite(value) and np.all(np.isfinite(grad)):
            return value, grad
        return np.inf, np.zeros_like(x)

    def curvature(x: np.ndarray) -> np.ndarray:
        h = np.asarray(hessian(x))
        return h if np.all(np.isfinite(h)) else np.eye(len(x))  # at a rejected point: unused

    for method in methods:
        with np.errstate(all="ignore"):
            result = minimize(
                objective, start, jac=True, hess=None if method == "BFGS" else curvature, method=method
            )
        if not (np.all(np.isfinite(result.x)) and np.isfinite(result.fun)):
            continue
        try:
            # L = chol(H^-1) computed as inv(chol(H))^T: H^-1 = (C C^T)^-1 = C^-T C^-1.
            root = np.linalg.inv(np.linalg.cholesky(np.asarray(hessian(result.x)))).T
        except np.linalg.LinAlgError:
            continue
        if np.all(np.isfinite(root)):
            return result.x, root
    return None


def _laplace(density: Any, data: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """:func:`mode_and_root` of ``density`` by BFGS from the priors' centre, or ``None``."""
    import jax

    def neg_logp(x: Any, data: Any) -> Any:
        return -density.logp(x, data)

    def neg_logp_unchunked(x: Any, data: Any) -> Any:
        return -density.logp_unchunked(x, data)

    args = (np.asarray(density.initial_point(), dtype=float), data)
    structure = _structure(density)
    value_and_grad = _cached_program(structure, "value_and_grad", lambda: jax.value_and_grad(neg_logp), args)
    hessian = _cached_program(structure, "hessian", lambda: jax.hessian(neg_logp_unchunked), args)
    return mode_and_root(lambda x: value_and_grad(x, data), lambda x: hessian(x, data), args[0])


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


def sample(model: Any, config: SamplerConfig, random_seed: int | None, progressbar: bool) -> Any:
    """Sample the PyMC ``model``; return an ``xarray.DataTree`` (of NumPy arrays) with a posterior group."""
    return container.to_numpy(_sample_pymc(model, config, random_seed, progressbar))


def _sample_pymc(model: Any, config: SamplerConfig, random_seed: int | None, progressbar: bool) -> Any:
    import pymc as pm

    backend = choose_backend(config.backend)
    Progress(progressbar)(
        f"sampling the PyMC model with {backend}: {config.chains} chains x ({config.tune} warm-up + "
        f"{config.draws} draws); compiling first"
    )
    common = dict(
        model=model,
        draws=config.draws,
        tune=config.tune,
        chains=config.chains,
        random_seed=random_seed,
        # PyMC's bar redraws in place: only on a terminal (the stage line above says the rest).
        progressbar=progressbar and on_terminal(),
        compute_convergence_checks=False,
    )
    with warnings.catch_warnings():
        # Our own diagnostics replace PyMC's; its chatter about them is noise here.
        warnings.filterwarnings("ignore", message=".*number of samples is too small.*")
        # PyMC's JAX post-processing donates buffers, which the CPU cannot take over; harmless.
        warnings.filterwarnings("ignore", message="Some donated buffers were not usable")
        if backend == "numpyro":
            setup_jax()
            # PyMC 6 takes the sampler's options in one `nuts` dict (nuts_sampler_kwargs is
            # deprecated): the driver's (chain_method, target_accept) and numpyro's NUTS kernel's
            # alike. Kernel options given as config.extra["nuts_kwargs"] (PyMC 5's place) join them.
            extra = dict(config.extra)
            kernel = extra.pop("nuts_kwargs", {})
            try:
                return pm.sample(
                    **common,
                    nuts_sampler="numpyro",
                    nuts={
                        "target_accept": config.target_accept,
                        "chain_method": "vectorized",
                        "dense_mass": True,
                        **kernel,
                        **extra,
                    },
                )
            finally:
                # JAX's own caches keep every program PyMC compiled for this model (its log
                # density, its sampler: ~900 memory maps a fit) although nothing can call them
                # again; past Linux's 65530 maps the next compilation crashes the process. The
                # fast path's programs still kept loaded (_PROGRAMS) compile again on their next
                # call, from the on-disk cache.
                setup_jax().clear_caches()
        if backend == "nutpie":
            return pm.sample(
                **common,
                nuts_sampler="nutpie",
                nuts={
                    "target_accept": config.target_accept,
                    "low_rank_modified_mass_matrix": True,
                    **config.extra,
                },
            )
        return pm.sample(
            **common,
            init="jitter+adapt_full",
            target_accept=config.target_accept,
            cores=min(config.chains, os.cpu_count() or 1),
            **config.extra,
        )


def _scalar_view(idata: Any, names: list[str]) -> tuple[Any, list[str]]:
    """A tree with ``posterior`` / ``sample_stats`` where every vector variable is split per element.

    :func:`bayescale.inference.diagnostics.compute` reads scalar variables only.
    """
    import xarray as xr

    posterior = container.posterior(idata)
    flat = {}
    for name in names:
        var = posterior[name]
        extra = [d for d in var.dims if d not in ("chain", "draw")]
        if not extra:
            flat[name] = var
            continue
        stacked = var.stack(element=extra)
        for i in range(stacked.sizes["element"]):
            flat[f"{name}[{i}]"] = stacked.isel(element=i, drop=True)
    view = container.from_groups(
        posterior=xr.Dataset(flat), sample_stats=container.group(idata, "sample_stats")
    )
    return view, list(flat)


def resolve_seed(random_seed: int | None) -> int:
    """``random_seed``, or a seed drawn from the system's entropy when it is ``None``.

    A fit records the seed it ran with, so a fit made without one can be re-run exactly
    (``random_seed=fit.random_seed``, CLI ``--seed``).
    """
    if random_seed is None:
        return secrets.randbelow(SEED_RANGE)
    if isinstance(random_seed, bool) or not isinstance(random_seed, (int, np.integer)):
        raise BayescaleError(f"random_seed must be an integer or None, got {random_seed!r}")
    return int(random_seed)


def sample_checked(
    model: Any,
    names: list[str],
    config: SamplerConfig,
    random_seed: int | None,
    progressbar: bool,
    warn: bool,
) -> tuple[Any, dict[str, Any], SamplerConfig]:
    """Sample ``model`` and diagnose its variables among ``names`` (vectors element by element).

    Returns
    -------
    idata, diagnostics, config
        The draws, the :func:`bayescale.inference.diagnostics.compute` report (a
        :class:`~bayescale.inference.diagnostics.FitWarning` when it fails and ``warn``),
        and ``config`` with the backend that ran.
    """
    idata = sample(model, config, random_seed, progressbar)
    view, flat = _scalar_view(idata, [n for n in names if n in container.posterior(idata)])
    report = diag.compute(view, flat)
    if warn:
        diag.warn_if_failed(report)
    return idata, report, replace(config, backend=choose_backend(config.backend))
