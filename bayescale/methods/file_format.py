"""The saved file's format: its stamp, the attrs it holds and the hashes that check it.

:func:`config_hash` covers the configuration and the runs, :func:`posterior_checksum` the
draws and :func:`content_hash` everything else the answers read; :func:`bayescale.load_fit`
refuses a file whose recorded hashes do not match. They are plain SHA-256: they catch
corruption and careless edits, not a forger who recomputes them (:mod:`.file_checks`
type-checks every value read back).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np

from bayescale.inference import container

FORMAT = "bayescale-fit"
#: 2: adds ``content_hash`` (diagnostics, sample stats, observed data, coordinates, version)
#: and stores a runs column whose name NetCDF cannot hold under a placeholder name.
FORMAT_VERSION = 2
REQUIRED_GROUPS = ("posterior", "sample_stats", "observed_data", "constant_data")

#: The attrs of a method's saved result that :func:`config_hash` covers (a Fit's are in it).
_METHOD_CONFIG_KEYS = ("kind", "settings", "sampler", "random_seed")


def config_hash(attrs: dict[str, Any], runs_ds: Any) -> str:
    """SHA-256 of the configuration attrs (a Fit's law and priors, a method's settings) and the runs."""
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


def posterior_checksum(posterior: Any) -> str:
    """SHA-256 of the posterior draws, variable by variable."""
    digest = hashlib.sha256()
    for name in sorted(posterior.data_vars):
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(posterior[name].values, dtype=float).tobytes())
    return digest.hexdigest()


#: The posterior attrs bayescale writes that :func:`config_hash` does not cover.
_CONTENT_KEYS = ("format", "format_version", "bayescale_version", "diagnostics")


def _array_bytes(values: Any) -> bytes:
    """Bytes of an array that survive a NetCDF round trip: text as JSON, numbers as float64."""
    values = np.asarray(values)
    if values.dtype.kind in "OUSM m":
        return json.dumps([str(v) for v in values.ravel().tolist()]).encode()
    return np.ascontiguousarray(values, dtype=float).tobytes()


def content_hash(attrs: dict[str, Any], idata: Any) -> str:
    """SHA-256 of every group's variables and coordinates, their non-hash attrs and the version.

    With :func:`config_hash` and :func:`posterior_checksum` this covers everything
    :func:`bayescale.load_fit` reads: diagnostics, sample stats, observed data, the runs and
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
