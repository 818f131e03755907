"""The PyMC backend: a PyMC model sampled by numpyro, nutpie or PyMC's own NUTS, then diagnosed."""

from __future__ import annotations

import os
import warnings
from dataclasses import replace
from typing import Any

from bayescale.inference import container
from bayescale.inference import diagnostics as diag
from bayescale.inference.progress import Progress, on_terminal
from bayescale.inference.settings import SamplerConfig, choose_backend
from bayescale.model.jax_backend import setup_jax


def sample(model: Any, config: SamplerConfig, random_seed: int | None, progressbar: bool) -> Any:
    """Sample the PyMC ``model``; return an ``xarray.DataTree`` (of NumPy arrays) with a posterior group."""
    return container.to_numpy(_sample_pymc(model, config, random_seed, progressbar))


def _sample_pymc(model: Any, config: SamplerConfig, random_seed: int | None, progressbar: bool) -> Any:
    import pymc as pm

    backend = choose_backend(config.backend)
    Progress(progressbar)(
        f"sampling the PyMC model with {backend}: {config.chains} chains x ({config.tune} warm-up + "
        f"{config.draws} draws); compiling first"
    )
    common = dict(
        model=model,
        draws=config.draws,
        tune=config.tune,
        chains=config.chains,
        random_seed=random_seed,
        # PyMC's bar redraws in place: only on a terminal (the stage line above says the rest).
        progressbar=progressbar and on_terminal(),
        compute_convergence_checks=False,
    )
    with warnings.catch_warnings():
        # Our own diagnostics replace PyMC's; its chatter about them is noise here.
        warnings.filterwarnings("ignore", message=".*number of samples is too small.*")
        # PyMC's JAX post-processing donates buffers, which the CPU cannot take over; harmless.
        warnings.filterwarnings("ignore", message="Some donated buffers were not usable")
        if backend == "numpyro":
            setup_jax()
            # PyMC 6 takes the sampler's options in one `nuts` dict (nuts_sampler_kwargs is
            # deprecated): the driver's (chain_method, target_accept) and numpyro's NUTS kernel's
            # alike. Kernel options given as config.extra["nuts_kwargs"] (PyMC 5's place) join them.
            extra = dict(config.extra)
            kernel = extra.pop("nuts_kwargs", {})
            try:
                return pm.sample(
                    **common,
                    nuts_sampler="numpyro",
                    nuts={
                        "target_accept": config.target_accept,
                        "chain_method": "vectorized",
                        "dense_mass": True,
                        **kernel,
                        **extra,
                    },
                )
            finally:
                # JAX's own caches keep every program PyMC compiled for this model (its log
                # density, its sampler: ~900 memory maps a fit) although nothing can call them
                # again; past Linux's 65530 maps the next compilation crashes the process. The
                # fast path's programs still kept loaded (_PROGRAMS) compile again on their next
                # call, from the on-disk cache.
                setup_jax().clear_caches()
        if backend == "nutpie":
            return pm.sample(
                **common,
                nuts_sampler="nutpie",
                nuts={
                    "target_accept": config.target_accept,
                    "low_rank_modified_mass_matrix": True,
                    **config.extra,
                },
            )
        return pm.sample(
            **common,
            init="jitter+adapt_full",
            target_accept=config.target_accept,
            cores=min(config.chains, os.cpu_count() or 1),
            **config.extra,
        )


def scalar_view(idata: Any, names: list[str]) -> tuple[Any, list[str]]:
    """A tree with ``posterior`` / ``sample_stats`` where every vector variable is split per element.

    :func:`bayescale.inference.diagnostics.compute` reads scalar variables only.
    """
    import xarray as xr

    posterior = container.posterior(idata)
    flat = {}
    for name in names:
        var = posterior[name]
        extra = [d for d in var.dims if d not in ("chain", "draw")]
        if not extra:
            flat[name] = var
            continue
        stacked = var.stack(element=extra)
        for i in range(stacked.sizes["element"]):
            flat[f"{name}[{i}]"] = stacked.isel(element=i, drop=True)
    view = container.from_groups(
        posterior=xr.Dataset(flat), sample_stats=container.group(idata, "sample_stats")
    )
    return view, list(flat)


def sample_checked(
    model: Any,
    names: list[str],
    config: SamplerConfig,
    random_seed: int | None,
    progressbar: bool,
    warn: bool,
) -> tuple[Any, diag.Diagnostics, SamplerConfig]:
    """Sample ``model`` and diagnose its variables among ``names`` (vectors element by element).

    Returns
    -------
    idata, diagnostics, config
        The draws, the :func:`bayescale.inference.diagnostics.compute` report (a
        :class:`~bayescale.inference.diagnostics.FitWarning` when it fails and ``warn``),
        and ``config`` with the backend that ran.
    """
    idata = sample(model, config, random_seed, progressbar)
    view, flat = scalar_view(idata, [n for n in names if n in container.posterior(idata)])
    report = diag.compute(view, flat)
    if warn:
        diag.warn_if_failed(report)
    return idata, report, replace(config, backend=choose_backend(config.backend))
