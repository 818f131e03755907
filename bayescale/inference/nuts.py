"""The NUTS kernel of the fast path: numpyro's functional NUTS on whitened coordinates, chains vectorised.

The end of warm-up gives every chain one step size (a collapsed chain restarts from a donor),
and the compiled programs run all iterations at once or in pieces under a progress bar.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from bayescale.inference import sharding
from bayescale.inference.settings import SamplerConfig
from bayescale.inference.sharding import CHAIN_AXIS, _over_chains

#: A chain whose adapted step size is below this fraction of the chains' median collapsed in warm-up.
_COLLAPSED_STEP = 1e-3


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
            # in the bulk can take too long a step in the tail. Any step size fixed after
            # warm-up leaves the posterior invariant; the measurements are in
            # docs/measurements.md ("The fast path's choices").
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
    shards = sharding.chain_shards(config.chains)
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
