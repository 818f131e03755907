"""Save and load a :class:`~bayescale.Fit` as NetCDF, atomically and checked.

The file is NetCDF with one group per ArviZ group (an ``xarray.DataTree``; files
written by earlier releases from an ArviZ 0.x InferenceData have the same
layout and load alike). The posterior's attrs carry the
package version, the law, the likelihood, the priors and fixed values as JSON,
the sampler configuration, the diagnostics, a hash of the configuration and
runs, a checksum of the posterior draws and a hash of everything else the
answers read (diagnostics, sample stats, observed data, the runs' attributes,
coordinates and the version), so :func:`load_fit` can rebuild the fit and
refuse a file that is corrupt, foreign or does not match. The hashes are plain
SHA-256: they catch corruption and careless edits, not a forger who recomputes
them, so every value read back is also type-checked (and the HTML report
escapes every value it shows).
"""

from __future__ import annotations

import errno
import gc
import hashlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from bayescale._version import __version__
from bayescale.data.storage import runs_from_dataset
from bayescale.errors import BayescaleError, FitFileError
from bayescale.inference import container
from bayescale.inference.diagnostics import warn_if_failed
from bayescale.inference.sampling import SamplerConfig
from bayescale.model.laws import get_law
from bayescale.model.priors import priors_from_json, priors_to_json
from bayescale.model.pymc_model import check_likelihood

FORMAT = "bayescale-fit"
#: 2: adds ``content_hash`` (diagnostics, sample stats, observed data, coordinates, version)
#: and stores a runs column whose name NetCDF cannot hold under a placeholder name.
FORMAT_VERSION = 2
REQUIRED_GROUPS = ("posterior", "sample_stats", "observed_data", "constant_data")


#: The result classes a saved file is rebuilt into, by kind; each method registers its own.
RESULT_TYPES: dict[str, Any] = {}


def register_result(kind: str, cls: Any) -> None:
    """Make :func:`load_fit` rebuild files of ``kind`` as ``cls`` (called by the module defining it)."""
    RESULT_TYPES[kind] = cls


def _config_hash(attrs: dict[str, Any], runs_ds: Any) -> str:
    keys = ("law", "likelihood", "priors", "fixed", "sampler", "random_seed")
    digest = hashlib.sha256(json.dumps({k: attrs[k] for k in keys}, sort_keys=True).encode())
    for name in sorted(runs_ds.data_vars):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(runs_ds[name].values).tobytes())
    return digest.hexdigest()


def _posterior_checksum(posterior: Any) -> str:
    digest = hashlib.sha256()
    for name in sorted(posterior.data_vars):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(posterior[name].values, dtype=float).tobytes())
    return digest.hexdigest()


#: The posterior attrs bayescale writes that :func:`_config_hash` does not cover.
_CONTENT_KEYS = ("format", "format_version", "bayescale_version", "diagnostics")


def _array_bytes(values: Any) -> bytes:
    """Bytes of an array that survive a NetCDF round trip: text as JSON, numbers as float64."""
    values = np.asarray(values)
    if values.dtype.kind in "OUSM m":
        return json.dumps([str(v) for v in values.ravel().tolist()]).encode()
    return np.ascontiguousarray(values, dtype=float).tobytes()


def _content_hash(attrs: dict[str, Any], idata: Any) -> str:
    """SHA-256 of every group's variables and coordinates, their non-hash attrs and the version.

    With :func:`_config_hash` and :func:`_posterior_checksum` this covers everything
    :func:`load_fit` reads: diagnostics, sample stats, observed data, the runs and
    their ``columns``/``source`` attrs, the group labels, the format and version.
    """
    digest = hashlib.sha256()
    digest.update(json.dumps({k: str(attrs[k]) for k in _CONTENT_KEYS}, sort_keys=True).encode())
    for group in sorted(container.group_names(idata)):
        ds = container.group(idata, group)
        digest.update(f"group {group}".encode())
        if group != "posterior":
            plain = {str(k): np.asarray(v).tolist() for k, v in ds.attrs.items()}
            digest.update(json.dumps(plain, sort_keys=True, default=str).encode())
        for name in sorted(map(str, ds.variables)):
            var = ds[name]
            digest.update(json.dumps([name, list(map(str, var.dims)), list(var.shape)]).encode())
            digest.update(_array_bytes(var.values))
    return digest.hexdigest()


def check_writable(path: str | Path, what: str = "the fit") -> Path:
    """Raise a BayescaleError unless a file can be written at ``path`` (checked by writing one).

    Called before a long fit so that a read-only folder, a file where a folder
    should be, or a folder in place of the file is found before, not after, sampling.
    """
    path = Path(path)
    parent = path.parent
    if not parent.exists():
        raise BayescaleError(f"cannot save {what}: folder {str(parent)!r} does not exist")
    if not parent.is_dir():
        raise BayescaleError(f"cannot save {what}: {str(parent)!r} is a file, not a folder")
    if path.is_dir():
        raise BayescaleError(f"cannot save {what}: {str(path)!r} is a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".probe", dir=parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise BayescaleError(
            f"cannot save {what} in {str(parent)!r}: {exc.strerror or exc} (read-only or full?)"
        ) from None
    return path


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _estimated_size(idata: Any) -> int:
    """Bytes the NetCDF file will need, roughly: the arrays plus room for headers."""
    arrays = sum(int(container.group(idata, g).nbytes) for g in container.group_names(idata))
    return int(arrays * 1.1) + 256 * 1024


def save_fit(fit: Any, path: str | Path) -> Path:
    """Write ``fit`` to ``path`` (NetCDF) atomically.

    The file is written beside the target and moved into place only once
    complete, so a failed write leaves any earlier file at ``path`` intact.

    Returns
    -------
    pathlib.Path
        The path written.
    """
    path = Path(path)
    if not path.parent.exists():
        raise BayescaleError(f"cannot save fit: folder {str(path.parent)!r} does not exist")
    if not path.parent.is_dir():
        raise BayescaleError(f"cannot save fit: {str(path.parent)!r} is a file, not a folder")
    idata = fit.idata.copy()
    attrs = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "bayescale_version": __version__,
        "law": fit.law.name,
        "likelihood": fit.likelihood,
        "priors": priors_to_json(fit.priors),
        "fixed": json.dumps(fit.fixed, sort_keys=True),
        "sampler": json.dumps(fit.sampler.to_dict(), sort_keys=True),
        "random_seed": json.dumps(fit.random_seed),
        "diagnostics": json.dumps(fit.diagnostics, sort_keys=True),
    }
    attrs["config_hash"] = _config_hash(attrs, container.group(idata, "constant_data"))
    attrs["posterior_checksum"] = _posterior_checksum(container.posterior(idata))
    attrs["content_hash"] = _content_hash(attrs, idata)
    idata["posterior"].attrs.update(attrs)
    # HDF5 meeting a full disk half-way through can leave its library in a bad state: check first.
    need, free = _estimated_size(idata), shutil.disk_usage(path.parent).free
    if free < need:
        raise OSError(
            errno.ENOSPC,
            f"No space left on device: {free} bytes free in {str(path.parent)!r}, the fit needs about {need}",
        )
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        os.chmod(tmp_name, 0o666 & ~_umask())  # mkstemp makes 0600 whatever the umask
        try:
            container.write_netcdf(idata, tmp_name)
        except OSError:
            raise
        except Exception as exc:  # h5py reports a failed write (e.g. a full disk) as RuntimeError
            code = errno.ENOSPC if "errno = 28" in str(exc) else errno.EIO
            raise OSError(code, f"writing {str(path)!r} failed: {type(exc).__name__}: {exc}") from None
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path


def load_fit(path: str | Path) -> Any:
    """Read a fit written by :meth:`Fit.save`.

    Raises
    ------
    FitFileError
        When the file is missing, not NetCDF, truncated or corrupt, written by
        something other than bayescale, by an incompatible version, or when
        its contents do not match its recorded hash.
    """
    path = Path(path)
    if not path.is_file():
        raise FitFileError(f"no saved fit at {str(path)!r}")
    _check_hdf5(path)
    failure = None
    try:
        idata = container.read_netcdf(path)
    except Exception as exc:  # h5py/netCDF raise many types for a damaged file
        failure = f"{type(exc).__name__}: {exc}"
        # h5netcdf's half-opened file fails again when it is collected and prints that as a
        # traceback ("Exception ignored in ..."): the error below already says what is wrong.
        hook, sys.unraisablehook = sys.unraisablehook, lambda unraisable: None
    if failure is not None:
        try:
            gc.collect()
        finally:
            sys.unraisablehook = hook
        raise FitFileError(f"{str(path)!r} is not a readable NetCDF fit (corrupt or truncated?): {failure}")
    missing = [g for g in REQUIRED_GROUPS if not container.has_group(idata, g)]
    if missing:
        raise FitFileError(f"{str(path)!r} is not a bayescale fit: missing group(s) {missing}")
    attrs = dict(idata["posterior"].attrs)
    constant_data = container.group(idata, "constant_data")
    if attrs.get("format") != FORMAT:
        raise FitFileError(
            f"{str(path)!r} is not a bayescale fit (no '{FORMAT}' stamp); was it written by Fit.save?"
        )
    try:
        version = int(attrs.get("format_version", -1))
    except (TypeError, ValueError):
        version = -1
    if version != FORMAT_VERSION:
        raise FitFileError(
            f"{str(path)!r} has fit format {attrs.get('format_version')} (written by bayescale "
            f"{attrs.get('bayescale_version')}); this bayescale {__version__} reads format {FORMAT_VERSION}: "
            "fit the runs again with this version (bayescale fit RUNS --out FILE)"
        )
    try:
        if attrs["config_hash"] != _config_hash(attrs, constant_data):
            raise FitFileError(
                f"{str(path)!r}: configuration or runs do not match the recorded hash (file altered?)"
            )
        if attrs["posterior_checksum"] != _posterior_checksum(container.posterior(idata)):
            raise FitFileError(
                f"{str(path)!r}: posterior draws do not match the recorded checksum (file corrupt?)"
            )
        if attrs["content_hash"] != _content_hash(attrs, idata):
            raise FitFileError(
                f"{str(path)!r}: diagnostics, sample stats, observed data, runs attributes or version "
                "do not match the recorded hash (file altered?)"
            )
        fit = RESULT_TYPES["fit"](
            idata=idata,
            law=get_law(attrs["law"]),
            runs=runs_from_dataset(constant_data),
            priors=priors_from_json(attrs["priors"]),
            fixed={k: float(v) for k, v in json.loads(attrs["fixed"]).items()},
            likelihood=attrs["likelihood"],
            sampler=SamplerConfig(**json.loads(attrs["sampler"])),
            random_seed=json.loads(attrs["random_seed"]),
            diagnostics=json.loads(attrs["diagnostics"]),
        )
        _check_types(fit)
    except KeyError as exc:
        raise FitFileError(
            f"{str(path)!r} lacks the attribute {exc.args[0]!r} every bayescale fit has"
        ) from None
    except FitFileError:
        raise
    except (BayescaleError, TypeError, ValueError) as exc:
        # An unknown law, prior or sampler setting: written by another version or extension.
        raise FitFileError(
            f"{str(path)!r} is incompatible with this bayescale {__version__} (file written by "
            f"{attrs.get('bayescale_version')}): {exc}"
        ) from None
    for key in list(attrs):
        idata["posterior"].attrs.pop(key, None)
    warn_if_failed(fit.diagnostics)
    return fit


def _check_hdf5(path: Path) -> None:
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
    Python error in the child) is left to :func:`load_fit`, which says what is wrong.
    The command line probes every fit it loads.
    """
    import subprocess

    try:
        done = subprocess.run(
            [sys.executable, "-c", _PROBE, str(path)], capture_output=True, timeout=timeout, check=False
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


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_types(fit: Any) -> None:
    """Raise TypeError when a value read from the file does not have the type bayescale writes.

    The hashes only catch careless edits; this keeps a crafted file's text out of
    numbers, flags and labels that the summary, the plans and the report show.
    """
    check_likelihood(fit.likelihood)
    seed = fit.random_seed
    if seed is not None and not (isinstance(seed, int) and not isinstance(seed, bool)):
        raise TypeError(f"random_seed must be an integer or null, got {seed!r}")
    d = fit.diagnostics
    if not isinstance(d, dict):
        raise TypeError(f"diagnostics must be a JSON object, got {type(d).__name__}")
    checks = {
        "divergences": lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 0,
        "max_r_hat": _is_number,
        "min_ess_bulk": _is_number,
        "ok": lambda v: isinstance(v, bool),
        "problems": lambda v: isinstance(v, list) and all(isinstance(p, str) for p in v),
        "r_hat": lambda v: isinstance(v, dict) and all(_is_number(x) for x in v.values()),
        "ess_bulk": lambda v: isinstance(v, dict) and all(_is_number(x) for x in v.values()),
    }
    for key, ok in checks.items():
        if key not in d or not ok(d[key]):
            raise TypeError(f"diagnostics[{key!r}] is missing or of the wrong type: {d.get(key)!r}")
    if d["ok"] and d["problems"]:
        raise TypeError("diagnostics say ok but list problems")
    for name, value in fit.fixed.items():
        if not np.isfinite(value):
            raise TypeError(f"fixed value of {name!r} is not finite: {value!r}")
    if not isinstance(fit.runs.source, str):
        raise TypeError(f"runs source must be text, got {fit.runs.source!r}")
