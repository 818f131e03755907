"""NUTS backends: a hand-built JAX density, numpyro or nutpie on the PyMC model, or PyMC itself.

``backend="auto"`` takes the fastest one that can fit the model: ``"jax"``
(:mod:`bayescale.model.jax_density` sampled by numpyro, without importing PyMC)
when numpyro is installed and the model is supported, else numpyro, nutpie or
PyMC's own sampler on the PyMC model. Every backend adapts a dense mass
matrix: the law's parameters are correlated (E against the amplitudes) and a
diagonal metric needs several times more leapfrog steps.

The front door, :func:`run`, chooses the path; the rest lives by job beside it:
:mod:`~bayescale.inference.settings`, :mod:`~bayescale.inference.pymc_backend`,
:mod:`~bayescale.inference.fast_path` (the driver), :mod:`~bayescale.inference.nuts`
(the kernel), :mod:`~bayescale.inference.sharding`, :mod:`~bayescale.inference.programs`
(the compiled-program cache) and :mod:`~bayescale.inference.laplace`. Their names that
other modules imported from here are still importable from here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from bayescale.errors import BayescaleError
from bayescale.inference import container
from bayescale.inference.fast_path import PATH_ATTR, _with_path, sample_density
from bayescale.inference.geometry import reparametrise
from bayescale.inference.laplace import mode_and_root
from bayescale.inference.nuts import shared_step_size
from bayescale.inference.programs import _cached_program
from bayescale.inference.pymc_backend import sample, sample_checked, scalar_view
from bayescale.inference.run_offsets import labelled_offsets, offsets_density, offsets_form
from bayescale.inference.settings import (
    BACKENDS,
    SAMPLER_DEFAULTS,
    SEED_RANGE,
    SamplerConfig,
    SamplerSettings,
    choose_backend,
    fold_sampler_keywords,
    installed,
    resolve_sampler,
    resolve_seed,
)
from bayescale.inference.sharding import chain_shards
from bayescale.model.jax_backend import setup_jax
from bayescale.model.jax_density import build_density, unsupported
from bayescale.model.likelihoods import Likelihood
from bayescale.model.pymc_model import build_model, run_labels

__all__ = [
    "BACKENDS",
    "PATH_ATTR",
    "SAMPLER_DEFAULTS",
    "SEED_RANGE",
    "SamplerConfig",
    "SamplerSettings",
    "_cached_program",
    "chain_shards",
    "choose_backend",
    "fold_sampler_keywords",
    "installed",
    "mode_and_root",
    "resolve_sampler",
    "resolve_seed",
    "run",
    "sample",
    "sample_checked",
    "sample_density",
    "scalar_view",
    "setup_jax",
    "shared_step_size",
]


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
    """Sample the posterior of ``law`` on ``runs``: the JAX density when it can, else the PyMC model.

    Returns
    -------
    idata, backend
        An ``xarray.DataTree`` with ``posterior`` and ``sample_stats`` groups,
        and the name of the backend that sampled it.
    """
    # "auto" takes the JAX fast path whenever it can represent the model: on 20 simulated 40-run
    # ladders and the bundled fits it mixed at least as well as numpyro on the PyMC model (see
    # benchmarks/compare_backends.py and the README's speed section) in a fraction of the time.
    if config.backend in ("auto", "jax"):
        if installed("numpyro") and installed("jax"):
            reason = unsupported(law, priors, likelihood)
        else:
            reason = "numpyro and jax are not installed (`pip install bayescale[fast]`)"
        if reason is None:
            labels = run_labels(runs)  # runs with checkpoints: the density's per-run offsets
            if labels is None:
                density = reparametrise(build_density(law, runs, priors, fixed, likelihood))
                return sample_density(density, config, random_seed, progressbar), "jax"
            density, laplace = offsets_density(law, runs, labels[1], priors, fixed, likelihood)
            idata = sample_density(density, config, random_seed, progressbar, laplace, scaled_fallback=True)
            path = container.group(idata, "sample_stats").attrs[PATH_ATTR]
            idata = _with_path(idata, f"{path}; run offsets {offsets_form(density)}")
            return labelled_offsets(idata, labels[0]), "jax"
        if config.backend == "jax":
            raise BayescaleError(f"backend 'jax' cannot fit this model: {reason}; use backend='auto'")
    else:
        reason = f"backend {config.backend!r} asked for"

    backend = choose_backend(config.backend)
    model = build_model(law, runs, priors, fixed, likelihood)
    idata = sample(model, replace(config, backend=backend), random_seed, progressbar)
    return _with_path(idata, f"PyMC model with {backend} (not the fast path: {reason})"), backend
