"""The compiled-program cache: programs exported to the cache folder, the last few kept loaded.

A program's key (:func:`_program_key`) hashes the model's constants, the shapes of the
arguments, the versions of jax and numpyro and bayescale's source, so a changed model is a
new program, never a stale one. :func:`loaded` and :func:`clear` show and empty what this
process keeps loaded.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bayescale.inference.sharding import _placed
from bayescale.model.jax_backend import cache_dir

#: How many compiled programs stay loaded in a process. Each holds its machine code in a few
#: hundred memory maps (~340 for the fast path's NUTS program), and Linux gives a process 65530
#: maps (``vm.max_map_count``): past that the next compilation crashes the process, which a
#: process fitting ~40 new shapes reached when no program was ever let go. A new shape loads
#: 4-5 programs, so the last few shapes fitted stay loaded (at most ~10,000 maps).
PROGRAMS_KEPT = 24

# Compiled programs loaded in this process, by _program_key, the most recently used last.
_PROGRAMS: OrderedDict[str, Any] = OrderedDict()


def loaded() -> list[str]:
    """Keys of the programs loaded in this process, the least recently used first."""
    return list(_PROGRAMS)


def clear() -> None:
    """Let go of every loaded program: the next use loads it from the cache folder, as a new process does."""
    _PROGRAMS.clear()


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
