"""Save and load every fitted result as NetCDF, atomically and checked.

A :class:`~bayescale.Fit`, :class:`~bayescale.IsoflopFit`, :class:`~bayescale.EnvelopeFit` or
:class:`~bayescale.StepsFit` is written by :func:`save_fit` and read back, as the same type, by
:func:`load_fit`; :data:`RESULT_TYPES` names each kind's class, imported when a file of
that kind is read (:func:`register_result` adds one). The method
results (every kind but ``"fit"``) store their data (runs or curves, and the arrays their
answers read) in ``constant_data`` and their settings as JSON in the ``settings`` attr, which
the configuration hash covers like a Fit's law and priors.

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

This module is the front door (the kinds, writing and reading); the format and its hashes are
in :mod:`.file_format`, the type checks in :mod:`.file_checks`, the child-process read of a
damaged HDF5 file in :mod:`.file_probe`, and a Fit's own attrs and second law in :mod:`.fit_file`.
"""

from __future__ import annotations

import errno
import gc
import hashlib
import importlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Protocol

from bayescale._version import __version__
from bayescale.data.config import parse_config
from bayescale.errors import BayescaleError, FitFileError
from bayescale.inference import container
from bayescale.inference.diagnostics import Diagnostics, warn_if_failed
from bayescale.inference.sampling import SamplerConfig
from bayescale.methods.file_checks import check_common, check_draws, json_object
from bayescale.methods.file_format import (
    FORMAT,
    FORMAT_VERSION,
    REQUIRED_GROUPS,
    config_hash,
    content_hash,
    posterior_checksum,
)
from bayescale.methods.file_probe import PROBE_TIMEOUT, check_hdf5, file_digest, probe_hdf5
from bayescale.methods.fit_file import fit_attrs, fit_from_file, with_variant
from bayescale.posterior.result import Result


class SavedMethod(Result, Protocol):
    """A method's result :func:`save_fit` writes through :meth:`saved_parts` (every kind but ``"fit"``)."""

    def saved_parts(self) -> tuple[Any, dict[str, Any]]:
        """The InferenceData to write (with ``constant_data``) and the JSON-ready settings."""
        ...

    @classmethod
    def from_saved(cls, idata: Any, settings: dict[str, Any], common: dict[str, Any]) -> Any:
        """Rebuild the result from :meth:`saved_parts`'s settings and ``common``.

        ``common`` holds the ``sampler``, ``random_seed`` and ``diagnostics``; a setting of
        the wrong type raises TypeError.
        """
        ...


#: The result classes a saved file is rebuilt into, by kind: a class, or where it is defined
#: (``"module:attr"``), imported when a file of that kind is first read. The table names the
#: built-in kinds, so ``bayescale.load_fit`` reads every kind in a process that imported none.
RESULT_TYPES: dict[str, type[Any] | str] = {
    "fit": "bayescale.methods.parametric:Fit",
    "isoflop": "bayescale.methods.isoflop:IsoflopFit",
    "envelope": "bayescale.methods.envelope:EnvelopeFit",
    "steps": "bayescale.methods.training_steps:StepsFit",
    "curves": "bayescale.methods.curves_result:CurvesFit",
    "downstream": "bayescale.methods.downstream_result:Downstream",
}

#: SHA-256 of each file :func:`save_fit` wrote in this process, by resolved path: such a file,
#: unchanged, needs no probe.
_WRITTEN: dict[str, str] = {}


def register_result(kind: str, cls: type[Any] | str) -> None:
    """Make :func:`load_fit` rebuild files of ``kind`` as ``cls``.

    ``cls`` is the class or, so that nothing is imported before a file of ``kind`` is read,
    where it is defined: ``"package.module:ClassName"``. A class other than the Fit (kind
    ``"fit"``) follows :class:`SavedMethod`.
    """
    RESULT_TYPES[kind] = cls


def result_type(kind: str) -> type[Any]:
    """The class of ``kind``'s results, imported from its module when registered by name."""
    cls = RESULT_TYPES[kind]
    if isinstance(cls, str):
        module, _, name = cls.partition(":")
        cls = RESULT_TYPES[kind] = getattr(importlib.import_module(module), name)
    return cls


def kind_of(result: Any) -> str:
    """The registered kind of ``result`` (``"fit"``, ``"isoflop"``, ``"envelope"``, ``"steps"``)."""
    for kind, cls in list(RESULT_TYPES.items()):
        # a kind registered by name whose module is not imported yet has no results
        if isinstance(cls, str) and cls.partition(":")[0] not in sys.modules:
            continue
        if type(result) is result_type(kind):
            return kind
    raise BayescaleError(
        f"cannot save a {type(result).__name__}: not a result type bayescale saves ({sorted(RESULT_TYPES)})"
    )


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


def save_fit(fit: Result, path: str | Path) -> Path:
    """Write ``fit`` (any registered result) to ``path`` (NetCDF) atomically.

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
    idata, attrs = _stamp(fit)
    attrs["config_hash"] = config_hash(attrs, container.group(idata, "constant_data"))
    attrs["posterior_checksum"] = posterior_checksum(container.posterior(idata))
    attrs["content_hash"] = content_hash(attrs, idata)
    idata["posterior"].attrs.update(attrs)
    # HDF5 meeting a full disk half-way through can leave its library in a bad state: check first.
    need, free = _estimated_size(idata), shutil.disk_usage(path.parent).free
    if free < need:
        raise OSError(
            errno.ENOSPC,
            f"No space left on device: {free} bytes free in {str(path.parent)!r}, the fit needs about {need}",
        )
    # HDF5 writes into memory, where no write can fail partway: a file it is writing when the disk
    # fills or RLIMIT_FSIZE is reached leaves the library in a state that crashes the process.
    try:
        data = container.netcdf_bytes(idata)
    except Exception as exc:  # h5py reports its failures as RuntimeError, ValueError ...
        code = errno.ENOSPC if "errno = 28" in str(exc) else errno.EIO
        raise OSError(code, f"writing {str(path)!r} failed: {type(exc).__name__}: {exc}") from None
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp_name, 0o666 & ~_umask())  # mkstemp makes 0600 whatever the umask
        digest = hashlib.sha256(data).hexdigest()
        os.replace(tmp_name, path)
        _WRITTEN[str(path.resolve())] = digest
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path


def _stamp(fit: Any) -> tuple[Any, dict[str, Any]]:
    """The InferenceData to write and its attrs before the hashes: common ones, then the kind's."""
    kind = kind_of(fit)
    common = {"format": FORMAT, "format_version": FORMAT_VERSION, "bayescale_version": __version__}
    shared = {
        "sampler": json.dumps(fit.sampler.to_dict(), sort_keys=True),
        "random_seed": json.dumps(fit.random_seed),
        "diagnostics": json.dumps(dict(fit.diagnostics), sort_keys=True),
    }
    if kind != "fit":
        idata, settings = fit.saved_parts()
        return idata, {**common, "kind": kind, "settings": json.dumps(settings, sort_keys=True), **shared}
    # A Fit's file has no "kind" attr: files written before the other kinds existed read the same.
    attrs = {**common, **fit_attrs(fit), **shared}
    return with_variant(fit, fit.idata.copy(), attrs), attrs


def load_fit(path: str | Path, *, probe: bool = True, probe_timeout: float | None = None) -> Result:
    """Read a result written by :meth:`Fit.save` (or the ``save`` of any other result type).

    Parameters
    ----------
    path
        The saved file.
    probe
        First read the file's whole structure in a child process (:func:`probe_hdf5`), so
        that damage which makes the HDF5 library hang or crash ends in a FitFileError
        instead of hanging or killing this process (a Jupyter kernel, a pipeline). It
        costs a Python start and an ``import h5py``, whatever the file's size (a few tenths of
        a second: docs/measurements.md, "Reading a saved fit"). A file this process
        saved and that has not changed since (same SHA-256) is trusted without it.
        ``False`` skips the probe, for files you trust.
    probe_timeout
        Seconds the probe may take before the file is refused (default
        :data:`PROBE_TIMEOUT`).

    Returns
    -------
    Result
        A :class:`~bayescale.Fit`, :class:`~bayescale.IsoflopFit`,
        :class:`~bayescale.EnvelopeFit` or :class:`~bayescale.StepsFit`, as saved.

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
    written = _WRITTEN.get(str(path.resolve()))
    if probe and (written is None or written != file_digest(path)):
        probe_hdf5(path, PROBE_TIMEOUT if probe_timeout is None else probe_timeout)
    check_hdf5(path)
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
    kind = attrs.get("kind", "fit")
    if not isinstance(kind, str) or kind not in RESULT_TYPES:
        raise FitFileError(
            f"{str(path)!r} holds a result of kind {kind!r}; this bayescale {__version__} reads "
            f"{sorted(RESULT_TYPES)}"
        )
    fit: Any
    try:
        if attrs["config_hash"] != config_hash(attrs, constant_data):
            raise FitFileError(
                f"{str(path)!r}: configuration or runs do not match the recorded hash (file altered?)"
            )
        if attrs["posterior_checksum"] != posterior_checksum(container.posterior(idata)):
            raise FitFileError(
                f"{str(path)!r}: posterior draws do not match the recorded checksum (file corrupt?)"
            )
        if attrs["content_hash"] != content_hash(attrs, idata):
            raise FitFileError(
                f"{str(path)!r}: diagnostics, sample stats, observed data, runs attributes or version "
                "do not match the recorded hash (file altered?)"
            )
        if kind != "fit":
            fit = _method_from_file(kind, idata, attrs)
        else:
            fit = fit_from_file(result_type("fit"), idata, attrs, constant_data)
        check_draws(fit, container.posterior(idata), required=kind == "fit")
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
        if kind == "fit":
            fit.idata["posterior"].attrs.pop(key, None)
    warn_if_failed(fit.diagnostics)
    return fit


def _method_from_file(kind: str, idata: Any, attrs: dict[str, Any]) -> Any:
    """A method's result from a checked file: its class rebuilds it from the settings and data."""
    settings = parse_config(attrs["settings"])
    if not isinstance(settings, dict):
        raise TypeError(f"settings must be a JSON object, got {type(settings).__name__}")
    random_seed = parse_config(attrs["random_seed"])
    diagnostics = parse_config(attrs["diagnostics"])
    check_common(random_seed, diagnostics)
    cls = result_type(kind)
    common = {
        "sampler": SamplerConfig(**json_object(attrs, "sampler")),
        "random_seed": random_seed,
        "diagnostics": Diagnostics.from_dict(diagnostics),
    }
    return cls.from_saved(idata, settings, common)
