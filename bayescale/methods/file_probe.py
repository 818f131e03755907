"""Reading a saved file's HDF5 structure safely before h5netcdf opens it.

Some damage to an HDF5 file's metadata makes the HDF5 library hang or crash the process:
:func:`probe_hdf5` reads the whole structure in a child process first, :func:`check_hdf5`
refuses a file HDF5 cannot open before h5netcdf tries.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

from bayescale.errors import FitFileError


def check_hdf5(path: Path) -> None:
    """Refuse a file HDF5 cannot open before h5netcdf tries (its failed open prints a traceback)."""
    import h5py

    try:
        with h5py.File(path, "r"):
            pass
    except Exception as exc:  # h5py raises OSError, RuntimeError, KeyError ... for a damaged file
        raise FitFileError(
            f"{str(path)!r} is not a readable NetCDF fit (corrupt or truncated?): {type(exc).__name__}: {exc}"
        ) from None


#: Seconds :func:`probe_hdf5` lets a child process read a saved fit's structure.
PROBE_TIMEOUT = 30.0


def file_digest(path: Path) -> str:
    """SHA-256 of the file's bytes (cheap beside a probe: docs/measurements.md, "Reading a saved fit")."""
    with open(path, "rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()


_PROBE = r"""
import sys
import h5py

def visit(name, obj):
    for key in obj.attrs:
        obj.attrs[key]
    if isinstance(obj, h5py.Dataset):
        [len(dim) for dim in obj.dims]
        obj[()]

with h5py.File(sys.argv[1], "r") as f:
    visit("/", f)
    f.visititems(visit)
"""


def probe_hdf5(path: str | Path, timeout: float = PROBE_TIMEOUT) -> None:
    """Read every object and attribute of ``path`` in a child process first.

    Some damage to an HDF5 file's metadata (one flipped bit in a dimension list) makes
    the HDF5 library spin forever, holding Python's lock, or crash, and no thread or
    signal can stop it; a child process can be. Raise a FitFileError when the child
    hangs past ``timeout`` seconds or is killed by a signal; anything else (including a
    Python error in the child) is left to :func:`bayescale.load_fit`, which says what is wrong.
    :func:`bayescale.load_fit` probes every file it did not write itself (its ``probe`` keyword).
    The child runs isolated (``-I``): no module of the current folder can stand in for h5py.
    """
    import subprocess

    try:
        done = subprocess.run(
            [sys.executable, "-I", "-c", _PROBE, str(path)], capture_output=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        raise FitFileError(
            f"{str(path)!r} is not a readable NetCDF fit (corrupt?): reading its structure did not "
            f"finish within {timeout:g} s"
        ) from None
    if done.returncode < 0:
        raise FitFileError(
            f"{str(path)!r} is not a readable NetCDF fit (corrupt?): reading it crashed the HDF5 "
            f"library (signal {-done.returncode})"
        )
