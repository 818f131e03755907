"""The parametric Fit's part of a saved file: its attrs, its second law, its rebuilding.

A Fit's file has no ``kind`` attr (files written before the other kinds existed read the
same); it stores the law, likelihood, priors and fixed values as attrs and, when fitted, the
second law (``Fit.variant_fit``) as ``variant_*`` groups, so that no command refits it.
"""

from __future__ import annotations

import json
from typing import Any

from bayescale.data.config import parse_config
from bayescale.data.storage import runs_from_dataset
from bayescale.data.units import LOSS_UNITS
from bayescale.errors import FitFileError
from bayescale.inference import container
from bayescale.inference.diagnostics import Diagnostics
from bayescale.inference.sampling import SamplerConfig
from bayescale.methods.file_checks import check_draws, check_types, json_object
from bayescale.methods.file_format import (
    INPUT_UNIT_ATTR,
    PRIOR_SET_ATTR,
    VARIANT_ATTR,
    VARIANT_PREFIX,
    posterior_checksum,
)
from bayescale.model.laws import get_law
from bayescale.model.laws.downstream import LINKS, get_link
from bayescale.model.priors import priors_from_json, priors_to_json


def fit_attrs(fit: Any) -> dict[str, str]:
    """The attrs of a Fit's file beside the common ones: law, likelihood, priors, fixed values."""
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
    return specific


def with_variant(fit: Any, idata: Any, attrs: dict[str, Any]) -> Any:
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
            "diagnostics": dict(variant.diagnostics),
            "posterior_checksum": posterior_checksum(container.posterior(variant.idata)),
            # PSIS-LOO of the two laws costs seconds: judged once here, read back by every answer
            "loo_caveat": fit._loo_caveat(variant),
        },
        sort_keys=True,
    )
    return idata


def variant_from_file(fit: Any, idata: Any, attrs: dict[str, Any]) -> Any:
    """The saved second law as a Fit on the same runs (its groups' hash is the file's content hash)."""
    saved = json_object(attrs, VARIANT_ATTR)
    groups = {
        name[len(VARIANT_PREFIX) :]: container.group(idata, name)
        for name in container.group_names(idata)
        if name.startswith(VARIANT_PREFIX)
    }
    tree = container.from_groups(**groups)
    if saved["posterior_checksum"] != posterior_checksum(container.posterior(tree)):
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
    check_types(variant)
    variant.diagnostics = Diagnostics.from_dict(saved["diagnostics"])  # checked by check_types
    return variant


def fit_from_file(cls: type[Any], idata: Any, attrs: dict[str, Any], constant_data: Any) -> Any:
    """The Fit (class ``cls``) and its saved second law from a file whose hashes were checked.

    A value of the wrong type raises TypeError; an unknown law, prior or setting BayescaleError.
    """
    variant_groups = [g for g in container.group_names(idata) if g.startswith(VARIANT_PREFIX)]
    own = container.from_groups(
        **{g: container.group(idata, g) for g in container.group_names(idata) if g not in variant_groups}
    )
    fit = cls(
        idata=own,
        law=get_link(attrs["law"]) if attrs["law"] in LINKS else get_law(attrs["law"]),
        runs=runs_from_dataset(constant_data),
        priors=priors_from_json(attrs["priors"]),
        fixed={k: float(v) for k, v in json_object(attrs, "fixed").items()},
        likelihood=attrs["likelihood"],
        sampler=SamplerConfig(**json_object(attrs, "sampler")),
        random_seed=parse_config(attrs["random_seed"]),
        diagnostics=parse_config(attrs["diagnostics"]),
    )
    check_types(fit)
    fit.diagnostics = Diagnostics.from_dict(fit.diagnostics)  # checked by check_types
    # before the caveats below evaluate the law on these draws
    check_draws(fit, container.posterior(idata), required=True)
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
        variant = variant_from_file(fit, idata, attrs)
        check_draws(variant, container.posterior(variant.idata), required=True)
        fit._variants[fit.variant_law] = variant
        loo_caveat = json_object(attrs, VARIANT_ATTR).get("loo_caveat")
        if not isinstance(loo_caveat, (str, type(None))):
            raise TypeError(f"loo_caveat must be text or null, got {type(loo_caveat).__name__}")
        fit.keep_caveats(variant, [m for m in (fit._nu_caveat(), loo_caveat) if m])
    return fit
