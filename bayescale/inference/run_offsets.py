"""The fast path for runs with checkpoints: per-run offsets sampled on the JAX density.

:func:`bayescale.inference.sampling.run` refuses runs that share a ``run`` label (it predates
the density's run offsets); :func:`run` here takes them to the same NUTS driver
(:func:`~bayescale.inference.sampling.sample_density`, the same whitening, shape buckets,
program cache and diagnostics) and hands every other model to it unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bayescale.errors import BayescaleError
from bayescale.inference import container
from bayescale.inference.geometry import reparametrise
from bayescale.inference.sampling import SamplerConfig, installed, sample_density
from bayescale.inference.sampling import run as run_plain
from bayescale.model.jax_density import build_density, unsupported
from bayescale.model.likelihoods import Likelihood
from bayescale.model.pymc_model import RUN_EFFECT, RUN_LABEL, run_labels


def run(
    law: Any,
    runs: Any,
    priors: Mapping[str, Any],
    fixed: Mapping[str, float],
    likelihood: Likelihood,
    config: SamplerConfig,
    random_seed: int | None,
    progressbar: bool,
) -> tuple[Any, str]:
    """Sample the posterior of ``law`` on ``runs`` like :func:`bayescale.inference.sampling.run`.

    Runs with checkpoints take the JAX density with their offsets when the backend is
    ``"auto"`` or ``"jax"`` and the density can represent the law; anything else is
    :func:`bayescale.inference.sampling.run`'s (the PyMC model, which has the same offsets).

    Returns
    -------
    idata, backend
        As :func:`bayescale.inference.sampling.run`; the offsets ``run_effect`` have the
        dimension ``run_label`` with the runs' labels as coordinates.
    """
    labels = run_labels(runs)
    if (
        labels is None
        or config.backend not in ("auto", "jax")
        or not (installed("numpyro") and installed("jax"))
    ):
        return run_plain(law, runs, priors, fixed, likelihood, config, random_seed, progressbar)
    reason = unsupported(law, priors, likelihood)
    if reason is not None:
        if config.backend == "jax":
            raise BayescaleError(f"backend 'jax' cannot fit this model: {reason}; use backend='auto'")
        return run_plain(law, runs, priors, fixed, likelihood, config, random_seed, progressbar)
    density = reparametrise(build_density(law, runs, priors, fixed, likelihood))
    idata = sample_density(density, config, random_seed, progressbar)
    return _labelled(idata, labels[0]), "jax"


def _labelled(idata: Any, labels: Any) -> Any:
    """The offsets without the padding's runs, on the dimension ``run_label``."""
    posterior = container.posterior(idata)
    effect = posterior[RUN_EFFECT]
    padded = str(next(d for d in effect.dims if d not in ("chain", "draw")))
    effect = effect.isel({padded: slice(0, len(labels))}).rename({padded: RUN_LABEL})
    posterior = posterior.drop_vars(RUN_EFFECT).drop_dims(padded)
    posterior[RUN_EFFECT] = effect.assign_coords({RUN_LABEL: labels})
    return container.with_group(idata, "posterior", posterior)
