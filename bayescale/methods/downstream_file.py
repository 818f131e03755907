"""The saved file of a :class:`~bayescale.methods.downstream_result.Downstream` (kind ``"downstream"``).

Step 1's groups as a saved Fit has them, each task's link's as ``link<i>_*`` groups, and the
settings of every step (its attrs and draws' checksum) and the LOO table of ``link="auto"``;
read back with the checks that refuse a file altered since.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, cast

import numpy as np
import pandas as pd
import xarray as xr

from bayescale.methods.parametric import Fit

#: The prefix of the groups of a saved Downstream that hold task ``i``'s link: ``link<i>_posterior`` ...
LINK_GROUP = "link"


def fit_settings(fit: Fit) -> dict[str, str]:
    """A step's attrs as a saved Fit has them (law, priors, sampler ...), plus its draws' checksum."""
    from bayescale.methods.file_format import posterior_checksum
    from bayescale.methods.fit_file import fit_attrs

    return {
        **fit_attrs(fit),
        "sampler": json.dumps(fit.sampler.to_dict(), sort_keys=True),
        "random_seed": json.dumps(fit.random_seed),
        "diagnostics": json.dumps(dict(fit.diagnostics), sort_keys=True),
        "posterior_checksum": posterior_checksum(fit.posterior),
    }


def with_runs(fit: Fit) -> Any:
    """A copy of the fit's draws with its runs and observed log target, as a sampled fit keeps them."""
    from bayescale.data.storage import runs_to_dataset
    from bayescale.methods.saved import with_data
    from bayescale.model.pymc_model import OBSERVED

    observed = xr.Dataset(
        {OBSERVED: (("run",), np.log(fit.runs.column("loss")))}, coords={"run": np.arange(len(fit.runs))}
    )
    return with_data(fit.idata.copy(), runs_to_dataset(fit.runs), observed)


def fit_from_settings(idata: Any, groups: Sequence[str], prefix: str, attrs: Any, step: str) -> Fit:
    """A step's Fit from its ``groups`` of a saved Downstream (``prefix`` stripped) and its attrs."""
    from bayescale.inference import container
    from bayescale.methods.file_format import posterior_checksum
    from bayescale.methods.fit_file import fit_from_file

    if not (isinstance(attrs, dict) and all(isinstance(v, str) for v in attrs.values())):
        raise TypeError(f"the saved settings of step {step!r} must be a JSON object of text")
    tree = container.from_groups(**{g[len(prefix) :]: container.group(idata, g) for g in groups})
    missing = [g for g in ("posterior", "constant_data") if not container.has_group(tree, g)]
    if missing:
        raise TypeError(f"the saved step {step!r} lacks its group(s) {missing}")
    if attrs.get("posterior_checksum") != posterior_checksum(container.posterior(tree)):
        raise TypeError(f"the draws of step {step!r} do not match their recorded checksum")
    return cast(Fit, fit_from_file(Fit, tree, attrs, container.group(tree, "constant_data")))


#: The columns of :attr:`~bayescale.methods.downstream_result.Downstream.choice` (its index, then
#: the LOO table's).
CHOICE_COLUMNS = (
    "task",
    "link",
    "rank",
    "elpd_loo",
    "p_loo",
    "se",
    "elpd_diff",
    "dse",
    "weight",
    "pareto_k_max",
)


def choice_from_settings(records: Any, tasks: Sequence[str]) -> pd.DataFrame | None:
    """The saved LOO table of ``link="auto"`` (``None`` when the links were given)."""
    if records is None:
        return None
    if not (isinstance(records, list) and records and all(isinstance(r, dict) for r in records)):
        raise TypeError(f"the saved LOO table must be a list of rows, got {type(records).__name__}")
    for row in records:
        if set(row) != set(CHOICE_COLUMNS):
            raise TypeError(
                f"a row of the saved LOO table has columns {sorted(row)}, not {list(CHOICE_COLUMNS)}"
            )
        if not (isinstance(row["task"], str) and row["task"] in tasks and isinstance(row["link"], str)):
            raise TypeError(
                f"a row of the saved LOO table names task {row['task']!r} and link {row['link']!r}"
            )
        for key in CHOICE_COLUMNS[2:]:
            value = row[key]
            if not (value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))):
                raise TypeError(f"the saved LOO table's {key!r} holds {value!r}, not a number")
    table = pd.DataFrame(records, columns=list(CHOICE_COLUMNS)).set_index(["task", "link"])
    return table.astype(float).astype({"rank": int})
