"""Per-run offsets sampled on the JAX density, named by the runs' labels.

The density pads the runs to a shape bucket; :func:`labelled_offsets` drops the padding's runs and
puts the offsets on the dimension ``run_label`` with the labels as coordinates, as the PyMC model does.
"""

from __future__ import annotations

from typing import Any

from bayescale.inference import container
from bayescale.model.pymc_model import RUN_EFFECT, RUN_LABEL


def labelled_offsets(idata: Any, labels: Any) -> Any:
    """``idata`` with the offsets ``run_effect`` on ``run_label`` and without the padding's runs."""
    posterior = container.posterior(idata)
    effect = posterior[RUN_EFFECT]
    padded = str(next(d for d in effect.dims if d not in ("chain", "draw")))
    effect = effect.isel({padded: slice(0, len(labels))}).rename({padded: RUN_LABEL})
    posterior = posterior.drop_vars(RUN_EFFECT).drop_dims(padded)
    posterior[RUN_EFFECT] = effect.assign_coords({RUN_LABEL: labels})
    return container.with_group(idata, "posterior", posterior)
