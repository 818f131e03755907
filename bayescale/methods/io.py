"""Save and load a :class:`~bayescale.Fit` as NetCDF, atomically and checked.

The file is an ArviZ InferenceData NetCDF. The posterior's attrs carry the
package version, the law, the likelihood, the priors and fixed values as JSON,
the sampler configuration, the diagnostics, a hash of the configuration and
runs, and a checksum of the posterior draws, so :func:`load_fit` can rebuild
the fit and refuse a file that is corrupt, foreign or does not match.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from bayescale._version import __version__
from bayescale.errors import BayescaleError, FitFileError
from bayescale.model.priors import priors_from_json, priors_to_json

FORMAT = "bayescale-fit"
FORMAT_VERSION = 1
REQUIRED_GROUPS = ("posterior", "sample_stats", "observed_data", "constant_data")


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
    attrs["config_hash"] = _config_hash(attrs, idata.constant_data)
    attrs["posterior_checksum"] = _posterior_checksum(idata.posterior)
    idata.posterior.attrs.update(attrs)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        idata.to_netcdf(tmp_name, engine="h5netcdf")
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
    import arviz as az

    from bayescale.inference.diagnostics import warn_if_failed
    from bayescale.inference.sampling import SamplerConfig
    from bayescale.methods.parametric import Fit, runs_from_dataset
    from bayescale.model.laws import get_law

    path = Path(path)
    if not path.is_file():
        raise FitFileError(f"no saved fit at {str(path)!r}")
    try:
        idata = az.from_netcdf(path, engine="h5netcdf")
        for group in idata.groups():
            getattr(idata, group).load()
    except Exception as exc:  # h5py/netCDF raise many types for a damaged file
        raise FitFileError(
            f"{str(path)!r} is not a readable NetCDF fit (corrupt or truncated?): {type(exc).__name__}: {exc}"
        ) from None
    missing = [g for g in REQUIRED_GROUPS if g not in idata.groups()]
    if missing:
        raise FitFileError(f"{str(path)!r} is not a bayescale fit: missing group(s) {missing}")
    attrs = dict(idata.posterior.attrs)
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
            f"{attrs.get('bayescale_version')}); this bayescale {__version__} reads format {FORMAT_VERSION}"
        )
    try:
        if attrs["config_hash"] != _config_hash(attrs, idata.constant_data):
            raise FitFileError(
                f"{str(path)!r}: configuration or runs do not match the recorded hash (file altered?)"
            )
        if attrs["posterior_checksum"] != _posterior_checksum(idata.posterior):
            raise FitFileError(
                f"{str(path)!r}: posterior draws do not match the recorded checksum (file corrupt?)"
            )
        fit = Fit(
            idata=idata,
            law=get_law(attrs["law"]),
            runs=runs_from_dataset(idata.constant_data),
            priors=priors_from_json(attrs["priors"]),
            fixed={k: float(v) for k, v in json.loads(attrs["fixed"]).items()},
            likelihood=attrs["likelihood"],
            sampler=SamplerConfig(**json.loads(attrs["sampler"])),
            random_seed=json.loads(attrs["random_seed"]),
            diagnostics=json.loads(attrs["diagnostics"]),
        )
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
        idata.posterior.attrs.pop(key, None)
    warn_if_failed(fit.diagnostics)
    return fit
