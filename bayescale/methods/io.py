"""Save and load every fitted result as NetCDF, atomically and checked.

A :class:`~bayescale.Fit`, :class:`~bayescale.IsoflopFit`, :class:`~bayescale.EnvelopeFit` or
:class:`~bayescale.StepsFit` is written by :func:`save_fit` and read back, as the same type, by
:func:`load_fit`; each class registers itself by kind (:func:`register_result`). The method
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
from typing import Any, Protocol

import numpy as np

from bayescale._version import __version__
from bayescale.data.config import parse_config
from bayescale.data.storage import runs_from_dataset
from bayescale.data.units import LOSS_UNITS
from bayescale.errors import BayescaleError, FitFileError
from bayescale.inference import container
from bayescale.inference.diagnostics import warn_if_failed
from bayescale.inference.sampling import SamplerConfig
from bayescale.model.laws import get_law
from bayescale.model.laws.downstream import LINKS, get_link
from bayescale.model.priors import priors_from_json, priors_to_json, support
from bayescale.model.pymc_model import check_likelihood
from bayescale.posterior.result import Result

FORMAT = "bayescale-fit"
#: 2: adds ``content_hash`` (diagnostics, sample stats, observed data, coordinates, version)
#: and stores a runs column whose name NetCDF cannot hold under a placeholder name.
FORMAT_VERSION = 2
REQUIRED_GROUPS = ("posterior", "sample_stats", "observed_data", "constant_data")


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


#: The result classes a saved file is rebuilt into, by kind; each method registers its own.
RESULT_TYPES: dict[str, type[Any]] = {}

#: The attrs of a method's saved result that :func:`_config_hash` covers (a Fit's are in it).
_METHOD_CONFIG_KEYS = ("kind", "settings", "sampler", "random_seed")


def register_result(kind: str, cls: type[Any]) -> None:
    """Make :func:`load_fit` rebuild files of ``kind`` as ``cls`` (called by the module defining it).

    ``cls`` other than the Fit (kind ``"fit"``) follows :class:`SavedMethod`.
    """
    RESULT_TYPES[kind] = cls


def kind_of(result: Any) -> str:
    """The registered kind of ``result`` (``"fit"``, ``"isoflop"``, ``"envelope"``, ``"steps"``)."""
    for kind, cls in RESULT_TYPES.items():
        if type(result) is cls:
            return kind
    raise BayescaleError(
        f"cannot save a {type(result).__name__}: not a result type bayescale saves ({sorted(RESULT_TYPES)})"
    )


def _config_hash(attrs: dict[str, Any], runs_ds: Any) -> str:
    kind = attrs.get("kind", "fit")
    keys: tuple[str, ...] = ("law", "likelihood", "priors", "fixed", "sampler", "random_seed")
    if kind != "fit":
        keys = _METHOD_CONFIG_KEYS
    digest = hashlib.sha256(json.dumps({k: attrs[k] for k in keys}, sort_keys=True).encode())
    for name in sorted(runs_ds.data_vars):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(runs_ds[name].values).tobytes())
    return digest.hexdigest()


#: The posterior attr holding a link fit's ``input_loss_unit``: the unit of the loss it reads,
#: which a chain checks against step 1's (:mod:`bayescale.questions.downstream`).
INPUT_UNIT_ATTR = "input_loss_unit"

#: The posterior attr holding the saved second law's settings (JSON), and the prefix of its groups:
#: a Fit's variant law (``Fit.variant_fit``) is saved with it so that no command refits it.
VARIANT_ATTR = "variant"
#: The population prior set a small ladder's fit borrowed (absent when none was).
PRIOR_SET_ATTR = "prior_set"
VARIANT_PREFIX = "variant_"


def _with_variant(fit: Any, idata: Any, attrs: dict[str, Any]) -> Any:
    """Add the fit's second law, when fitted, as ``variant_*`` groups and its settings as an attr."""
    variant = fit._variants.get(fit.variant_law) if hasattr(fit, "_variants") else None
    if variant is None:
        return idata
    for name in container.group_names(variant.idata):
        idata = container.with_group(idata, VARIANT_PREFIX + name, container.group(variant.idata, name))
    attrs[VARIANT_ATTR] = json.dumps(
        {
            "law": variant.law.name,
            "likelihood": variant.likelihood,
            "priors": priors_to_json(variant.priors),
            "fixed": variant.fixed,
            "sampler": variant.sampler.to_dict(),
            "random_seed": variant.random_seed,
            "diagnostics": variant.diagnostics,
            "posterior_checksum": _posterior_checksum(container.posterior(variant.idata)),
            # PSIS-LOO of the two laws costs seconds: judged once here, read back by every answer
            "loo_caveat": fit._loo_caveat(variant),
        },
        sort_keys=True,
    )
    return idata


def _variant_from_file(fit: Any, idata: Any, attrs: dict[str, Any]) -> Any:
    """The saved second law as a Fit on the same runs (its groups' hash is the file's content hash)."""
    saved = _json_object(attrs, VARIANT_ATTR)
    groups = {
        name[len(VARIANT_PREFIX) :]: container.group(idata, name)
        for name in container.group_names(idata)
        if name.startswith(VARIANT_PREFIX)
    }
    tree = container.from_groups(**groups)
    if saved["posterior_checksum"] != _posterior_checksum(container.posterior(tree)):
        raise FitFileError("the saved second law's draws do not match their recorded checksum")
    variant = type(fit)(
        idata=tree,
        law=get_law(saved["law"]),
        runs=fit.runs,
        priors=priors_from_json(saved["priors"]),
        fixed={k: float(v) for k, v in saved["fixed"].items()},
        likelihood=saved["likelihood"],
        sampler=SamplerConfig(**saved["sampler"]),
        random_seed=saved["random_seed"],
        diagnostics=saved["diagnostics"],
        warn=False,
    )
    _check_types(variant)
    return variant


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
    if VARIANT_ATTR in attrs:  # files without a saved second law hash as before
        digest.update(str(attrs[VARIANT_ATTR]).encode())
    if INPUT_UNIT_ATTR in attrs:  # a link fit's; other files hash as before
        digest.update(f"{INPUT_UNIT_ATTR} {attrs[INPUT_UNIT_ATTR]}".encode())
    if PRIOR_SET_ATTR in attrs:  # a small ladder's; other files hash as before
        digest.update(f"{PRIOR_SET_ATTR} {attrs[PRIOR_SET_ATTR]}".encode())
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
        "diagnostics": json.dumps(fit.diagnostics, sort_keys=True),
    }
    if kind != "fit":
        idata, settings = fit.saved_parts()
        return idata, {**common, "kind": kind, "settings": json.dumps(settings, sort_keys=True), **shared}
    # A Fit's file has no "kind" attr: files written before the other kinds existed read the same.
    specific = {
        "law": fit.law.name,
        "likelihood": fit.likelihood,
        "priors": priors_to_json(fit.priors),
        "fixed": json.dumps(fit.fixed, sort_keys=True),
    }
    unit = getattr(fit, INPUT_UNIT_ATTR, None)
    if unit is not None:
        specific[INPUT_UNIT_ATTR] = str(unit)
    if getattr(fit, PRIOR_SET_ATTR, None) is not None:
        specific[PRIOR_SET_ATTR] = str(fit.prior_set)
    attrs = {**common, **specific, **shared}
    return _with_variant(fit, fit.idata.copy(), attrs), attrs


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
        costs a Python start and an ``import h5py``, whatever the file's size: loading
        took 0.26 s against 0.09 s without it on a quiet 2-core machine, 0.93 s against
        0.39 s at load 8.7. A file this process
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
    if probe and (written is None or written != _file_digest(path)):
        probe_hdf5(path, PROBE_TIMEOUT if probe_timeout is None else probe_timeout)
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
    kind = attrs.get("kind", "fit")
    if not isinstance(kind, str) or kind not in RESULT_TYPES:
        raise FitFileError(
            f"{str(path)!r} holds a result of kind {kind!r}; this bayescale {__version__} reads "
            f"{sorted(RESULT_TYPES)}"
        )
    fit: Any
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
        if kind != "fit":
            fit = _method_from_file(kind, idata, attrs)
        else:
            variant_groups = [g for g in container.group_names(idata) if g.startswith(VARIANT_PREFIX)]
            own = container.from_groups(
                **{
                    g: container.group(idata, g)
                    for g in container.group_names(idata)
                    if g not in variant_groups
                }
            )
            fit = RESULT_TYPES["fit"](
                idata=own,
                law=get_link(attrs["law"]) if attrs["law"] in LINKS else get_law(attrs["law"]),
                runs=runs_from_dataset(constant_data),
                priors=priors_from_json(attrs["priors"]),
                fixed={k: float(v) for k, v in _json_object(attrs, "fixed").items()},
                likelihood=attrs["likelihood"],
                sampler=SamplerConfig(**_json_object(attrs, "sampler")),
                random_seed=parse_config(attrs["random_seed"]),
                diagnostics=parse_config(attrs["diagnostics"]),
            )
            _check_types(fit)
            # before the caveats below evaluate the law on these draws
            _check_draws(fit, container.posterior(idata), required=True)
            if INPUT_UNIT_ATTR in attrs:
                unit = attrs[INPUT_UNIT_ATTR]
                if not isinstance(unit, str) or unit not in LOSS_UNITS:
                    raise TypeError(f"{INPUT_UNIT_ATTR} must be one of {sorted(LOSS_UNITS)}, got {unit!r}")
                fit.input_loss_unit = unit
            if PRIOR_SET_ATTR in attrs:
                if not isinstance(attrs[PRIOR_SET_ATTR], str):
                    raise TypeError(f"{PRIOR_SET_ATTR} must be text, got {attrs[PRIOR_SET_ATTR]!r}")
                fit.prior_set = attrs[PRIOR_SET_ATTR]
            if attrs["law"] in LINKS:  # a link has no second law (see methods.downstream.no_second_law)
                fit._variants[fit.variant_law] = None
            if VARIANT_ATTR in attrs:
                variant = _variant_from_file(fit, idata, attrs)
                _check_draws(variant, container.posterior(variant.idata), required=True)
                fit._variants[fit.variant_law] = variant
                loo_caveat = _json_object(attrs, VARIANT_ATTR).get("loo_caveat")
                if not isinstance(loo_caveat, (str, type(None))):
                    raise TypeError(f"loo_caveat must be text or null, got {type(loo_caveat).__name__}")
                fit.keep_caveats(variant, [m for m in (fit._nu_caveat(), loo_caveat) if m])
        _check_draws(fit, container.posterior(idata), required=kind == "fit")
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
    _check_common(random_seed, diagnostics)
    cls = RESULT_TYPES[kind]
    common = {
        "sampler": SamplerConfig(**_json_object(attrs, "sampler")),
        "random_seed": random_seed,
        "diagnostics": diagnostics,
    }
    return cls.from_saved(idata, settings, common)


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

#: SHA-256 of each file :func:`save_fit` wrote in this process, by resolved path: such a file,
#: unchanged, needs no probe.
_WRITTEN: dict[str, str] = {}


def _file_digest(path: Path) -> str:
    """SHA-256 of the file's bytes (0.035 s for 50 MB on a quiet machine)."""
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
    Python error in the child) is left to :func:`load_fit`, which says what is wrong.
    :func:`load_fit` probes every file it did not write itself (its ``probe`` keyword).
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


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_types(fit: Any) -> None:
    """Raise TypeError when a value read from the file does not have the type bayescale writes.

    The hashes only catch careless edits; this keeps a crafted file's text out of
    numbers, flags and labels that the summary, the plans and the report show.
    """
    check_likelihood(fit.likelihood)
    _check_common(fit.random_seed, fit.diagnostics)
    for name, value in fit.fixed.items():
        if not np.isfinite(value):
            raise TypeError(f"fixed value of {name!r} is not finite: {value!r}")
    if not isinstance(fit.runs.source, str):
        raise TypeError(f"runs source must be text, got {fit.runs.source!r}")


def _json_object(attrs: dict[str, Any], key: str) -> dict[str, Any]:
    """The attr ``key`` parsed as a JSON object (bounded in depth and size); TypeError otherwise."""
    text = attrs[key]
    if not isinstance(text, str):
        raise TypeError(f"attr {key!r} must be JSON text, got {type(text).__name__}")
    value = parse_config(text)
    if not isinstance(value, dict):
        raise TypeError(f"attr {key!r} must be a JSON object, got {type(value).__name__}")
    return value


def _check_draws(fit: Any, posterior: Any, required: bool) -> None:
    """Raise TypeError unless the draws are numbers, finite and inside their priors' supports.

    A forger can recompute the hashes: without this, NaN draws drop out of an average, a negative
    ``E`` or exponent is planned with, and a missing variable fails deep inside a question.
    ``required`` (a Fit): every sampled parameter of the law must be there.
    """
    for name in posterior.data_vars:
        var = posterior[name]
        if var.dtype.kind not in "fiub":
            raise TypeError(f"posterior variable {name!r} holds {var.dtype} values, not numbers")
        if tuple(var.dims[:2]) != ("chain", "draw"):
            raise TypeError(f"posterior variable {name!r} has dims {tuple(var.dims)}, not (chain, draw, ...)")
    if required:
        missing = [p for p in fit.law.parameter_names if p not in fit.priors and p not in fit.fixed]
        if missing:
            raise TypeError(
                f"law {fit.law.name!r} has parameter(s) {missing} with neither a prior nor a value"
            )
    sizes = dict(posterior.sizes)
    if sizes.get("chain", 0) * sizes.get("draw", 0) < 2:
        raise TypeError(
            f"the posterior holds {sizes.get('chain', 0)} chain(s) x {sizes.get('draw', 0)} draw(s); "
            "an answer needs at least 2 draws"
        )
    for name, prior in getattr(fit, "priors", {}).items():
        if name not in posterior.data_vars:
            if required:
                raise TypeError(f"the posterior lacks the variable {name!r} of law {fit.law.name!r}")
            continue
        values = np.asarray(posterior[name].values, dtype=float)
        if not np.isfinite(values).all():
            raise TypeError(f"posterior variable {name!r} holds NaN or infinite draws")
        low, high = support(prior)
        # a positive parameter is sampled on the log scale: an exact 0 comes from no sampler, and
        # the law's log of it would be -inf in every answer
        if values.min() < low or values.max() > high or (low == 0 and values.min() == 0):
            raise TypeError(
                f"posterior variable {name!r} has draws from {values.min():g} to {values.max():g}, "
                f"outside the support {'(' if low == 0 else '['}{low:g}, {high:g}] of its prior "
                f"{prior.describe()}"
            )


def _check_common(seed: Any, d: Any) -> None:
    """Raise TypeError unless the seed and diagnostics have the types every result writes."""
    if seed is not None and not (isinstance(seed, int) and not isinstance(seed, bool)):
        raise TypeError(f"random_seed must be an integer or null, got {seed!r}")
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
    if "sampler_path" in d and not isinstance(d["sampler_path"], str):
        raise TypeError(f"diagnostics['sampler_path'] must be text, got {d['sampler_path']!r}")
    if "warnings" in d and not (
        isinstance(d["warnings"], list) and all(isinstance(w, str) for w in d["warnings"])
    ):
        raise TypeError(f"diagnostics['warnings'] must be a list of text, got {d['warnings']!r}")
    for key in ("median_steps", "max_tree_depth_share"):
        if d.get(key) is not None and not _is_number(d[key]):
            raise TypeError(f"diagnostics[{key!r}] must be a number, got {d[key]!r}")
    if d["ok"] and d["problems"]:
        raise TypeError("diagnostics say ok but list problems")
