"""Chain sharding: the sampler's chains split over JAX's CPU devices, one program per device.

Devices run their chains independently; only the end of warm-up
(:func:`bayescale.inference.nuts._end_warmup`) exchanges step sizes over :data:`CHAIN_AXIS`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

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
