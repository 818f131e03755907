"""JAX set up once for every compiled program: 64-bit floats and the on-disk compilation cache."""

from __future__ import annotations

import os
import stat
import warnings
from pathlib import Path
from typing import Any

from bayescale.errors import CacheWarning

#: Environment variable naming the folder of compiled programs ("" or "0" turns the cache off).
CACHE_ENV = "BAYESCALE_CACHE_DIR"


def cache_dir() -> Path | None:
    """Folder of the on-disk JAX compilation cache, or ``None`` when turned off.

    ``$BAYESCALE_CACHE_DIR`` if set (empty or ``0`` turns the cache off), else
    ``$XDG_CACHE_HOME/bayescale/jax`` (``~/.cache/bayescale/jax``). Programs found there are
    loaded and run without a check, so it must be a folder only the user can write.
    """
    env = os.environ.get(CACHE_ENV)
    if env is not None:
        return None if env in ("", "0") else Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "bayescale" / "jax"


def loose_permissions(folder: Path) -> str | None:
    """Why others could change the programs in ``folder`` (``None`` when they cannot).

    Unsafe, as ssh judges its files: the folder owned by another user (not root) or writable by
    group or others, or a folder above it that others may write without the sticky bit (they could
    put another folder in its place).
    """
    uid = os.getuid()
    info = folder.stat()
    if info.st_uid not in (uid, 0):
        return f"it is owned by another user (uid {info.st_uid})"
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        who = "others" if info.st_mode & stat.S_IWOTH else "its group"
        return f"it is writable by {who} (mode {info.st_mode & 0o777:o})"
    for parent in folder.resolve().parents:
        mode = parent.stat().st_mode
        if mode & stat.S_IWOTH and not mode & stat.S_ISVTX:
            return f"the folder above it, {str(parent)!r}, is writable by others (mode {mode & 0o777:o})"
    return None


#: Size limit of JAX's compilation cache; beyond it the least recently used programs are evicted.
CACHE_MAX_BYTES = 4 * 2**30


#: XLA's flag for the number of CPU devices, and the most this module asks for.
DEVICE_FLAG = "xla_force_host_platform_device_count"
MAX_DEVICES = 8


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS tells it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def setup_jax() -> Any:
    """Import JAX in 64-bit mode with the persistent compilation cache; return the module.

    A cold process then loads the compiled sampler from disk instead of
    compiling it again (seconds saved on every fit of the same shape). Unless
    ``XLA_FLAGS`` already sets the number of CPU devices, JAX gets one per usable
    core (at most :data:`MAX_DEVICES`), over which the sampler splits its chains;
    it only takes effect if JAX was not imported before.
    """
    flags = os.environ.get("XLA_FLAGS", "")
    if DEVICE_FLAG not in flags:
        # One CPU device per usable core: the sampler splits its chains over them.
        os.environ["XLA_FLAGS"] = f"{flags} --{DEVICE_FLAG}={min(MAX_DEVICES, usable_cores())}".strip()
    import jax

    jax.config.update("jax_enable_x64", True)
    folder = cache_dir()
    if folder is not None and jax.config.values["jax_compilation_cache_dir"] is None:
        try:
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError:
            return jax  # an unwritable cache only costs compile time
        loose = loose_permissions(folder)
        if loose:
            # As ssh refuses a key others could have replaced: programs loaded from here run as the user.
            warnings.warn(
                f"not using the compilation cache {str(folder)!r}: {loose}; compiled programs loaded from "
                f"it would run as you (make it yours and chmod go-w, or set {CACHE_ENV} to another folder)",
                CacheWarning,
                stacklevel=2,
            )
            return jax
        jax.config.update("jax_compilation_cache_dir", str(folder))
        # Cache every program, even the many small ones numpyro runs eagerly while it
        # initialises the chains: together they cost seconds to compile in a cold process.
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        # A size limit bounds the folder (least recently used programs are evicted) and turns on
        # JAX's file lock around cache reads and writes, so concurrent fits (fit_many's workers)
        # never read an entry another process is writing.
        jax.config.update("jax_compilation_cache_max_size", CACHE_MAX_BYTES)
    return jax
