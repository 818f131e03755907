"""Type checks of the values a saved file holds, run by :func:`bayescale.load_fit`.

The hashes (:mod:`.file_format`) only catch careless edits; these keep a crafted file's
text out of numbers, flags and labels, and its draws inside their priors' supports.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bayescale.data.config import parse_config
from bayescale.model.priors import support
from bayescale.model.pymc_model import check_likelihood


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_types(fit: Any) -> None:
    """Raise TypeError when a value read from the file does not have the type bayescale writes.

    The hashes only catch careless edits; this keeps a crafted file's text out of
    numbers, flags and labels that the summary, the plans and the report show.
    """
    check_likelihood(fit.likelihood)
    check_common(fit.random_seed, fit.diagnostics)
    for name, value in fit.fixed.items():
        if not np.isfinite(value):
            raise TypeError(f"fixed value of {name!r} is not finite: {value!r}")
    if not isinstance(fit.runs.source, str):
        raise TypeError(f"runs source must be text, got {fit.runs.source!r}")


def json_object(attrs: dict[str, Any], key: str) -> dict[str, Any]:
    """The attr ``key`` parsed as a JSON object (bounded in depth and size); TypeError otherwise."""
    text = attrs[key]
    if not isinstance(text, str):
        raise TypeError(f"attr {key!r} must be JSON text, got {type(text).__name__}")
    value = parse_config(text)
    if not isinstance(value, dict):
        raise TypeError(f"attr {key!r} must be a JSON object, got {type(value).__name__}")
    return value


def check_draws(fit: Any, posterior: Any, required: bool) -> None:
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


def check_common(seed: Any, d: Any) -> None:
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
