"""Per-run offsets on the JAX density: their form chosen from the data, and named by the runs' labels.

:func:`offsets_density` chooses how the sampler holds the offsets (centred when the checkpoints pin
them, non-centred when they leave them loose); the density pads the runs to a shape bucket, and
:func:`labelled_offsets` drops the padding's runs and puts the offsets on the dimension
``run_label`` with the labels as coordinates, as the PyMC model does.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from bayescale.inference import container
from bayescale.inference.geometry import reparametrise
from bayescale.inference.laplace import _laplace
from bayescale.model.jax_backend import setup_jax
from bayescale.model.jax_density import CHUNK, bucket, build_density, in_offsets_space, pinned_offsets
from bayescale.model.laws import ops
from bayescale.model.likelihoods import Likelihood
from bayescale.model.priors import Prior
from bayescale.model.pymc_model import RUN_EFFECT, RUN_LABEL

#: The centred form is kept when, at its posterior mode, the data hold at least this share of the
#: offsets' variance on average over the runs (``kappa / (1 + kappa)``, ``kappa = n sigma_run^2 /
#: sigma^2`` for a run of ``n`` rows): a half is where the two forms trade places.
PINNED_SHARE = 0.5


def offsets_density(
    law: Any,
    runs: Any,
    index: np.ndarray,
    priors: Mapping[str, Prior],
    fixed: Mapping[str, float],
    likelihood: Likelihood,
) -> tuple[Any, tuple[np.ndarray, np.ndarray] | None]:
    """The density of a fit with run offsets in the form its data call for, and its Laplace mode.

    The mode of the non-centred form (well defined whatever the data) gives ``sigma`` and
    ``sigma_run``; when the runs' rows pin their offsets there (:func:`pinned_share` at least
    :data:`PINNED_SHARE`: many checkpoints per run, little noise), the centred form
    (:func:`~bayescale.model.jax_density.build_density`, ``centred_offsets``), its mode found from
    that one mapped to its coordinates. From the priors' centre (offsets 0) its search runs into
    the centred form's funnel instead (``sigma_run`` to 0, ``sigma`` taking the offsets: seen on
    a simulated ladder). Otherwise, or when the centred mode is not found, or above
    :data:`~bayescale.model.jax_density.CHUNK` rows (the centred form reads all rows at once),
    the non-centred form.
    ``index`` maps rows to runs (:func:`~bayescale.model.pymc_model.run_labels`).
    """
    jax = setup_jax()
    import jax.numpy as jnp

    plain = reparametrise(build_density(law, runs, priors, fixed, likelihood))
    laplace = _laplace(plain, jax.tree.map(jnp.asarray, plain.data))
    if laplace is None:
        return plain, None
    theta = plain.constrain(laplace[0])
    counts = np.bincount(index)
    share = pinned_share(counts, float(theta["sigma"]), float(theta["sigma_run"]))
    if share < PINNED_SHARE or bucket(len(runs)) > CHUNK:
        return plain, laplace
    scale = float(theta["sigma"]) / math.sqrt(float(np.median(counts)))  # how well rows pin an offset
    centred = reparametrise(build_density(law, runs, priors, fixed, likelihood, centred_offsets=scale))
    # The non-centred mode in the centred coordinates: the offsets less those the rows pin.
    start = np.array(laplace[0], dtype=float)
    size = plain.sites[-1].size
    z = start[-size:]
    inside = in_offsets_space(z, plain.data)
    offsets = float(theta["sigma_run"]) * inside
    start[-size:] = (offsets - pinned_offsets(law, theta, plain.data, ops.NUMPY)) / scale + (z - inside)
    found = _laplace(centred, jax.tree.map(jnp.asarray, centred.data), start)
    return (centred, found) if found is not None else (plain, laplace)


def pinned_share(counts: np.ndarray, sigma: float, sigma_run: float) -> float:
    """The share of the offsets' variance the rows hold, on average over runs of ``counts`` rows.

    A run of ``n`` rows of noise ``sigma`` measures its offset to ``sigma / sqrt(n)``; against a
    spread ``sigma_run`` the data hold ``kappa / (1 + kappa)`` of it, ``kappa = n sigma_run^2 /
    sigma^2`` (the shrinkage weight of a normal hierarchy). Near 1 the offsets are pinned (centre
    them); near 0 they are the prior's (do not).
    """
    if not (np.isfinite(sigma) and np.isfinite(sigma_run) and sigma > 0):
        return 0.0
    kappa = np.asarray(counts, dtype=float) * (sigma_run / sigma) ** 2
    return float(np.mean(kappa / (1.0 + kappa)))


def offsets_form(density: Any) -> str:
    """How ``density`` holds the run offsets, in words for the sampler path."""
    if density.sites[-1].transform == "offsets_centred":
        return "centred (pinned by the runs' rows)"
    return "non-centred"


def labelled_offsets(idata: Any, labels: Any) -> Any:
    """``idata`` with the offsets ``run_effect`` on ``run_label`` and without the padding's runs."""
    posterior = container.posterior(idata)
    effect = posterior[RUN_EFFECT]
    padded = str(next(d for d in effect.dims if d not in ("chain", "draw")))
    effect = effect.isel({padded: slice(0, len(labels))}).rename({padded: RUN_LABEL})
    posterior = posterior.drop_vars(RUN_EFFECT).drop_dims(padded)
    posterior[RUN_EFFECT] = effect.assign_coords({RUN_LABEL: labels})
    return container.with_group(idata, "posterior", posterior)
