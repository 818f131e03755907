"""Shared fixtures: real fits are made once per session and reused."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import bayescale as bs
from bayescale.checks.simulate import MUENNIGHOFF_C4, TRUE_CHINCHILLA, simulate_ladder
from bayescale.inference.sampling import SAMPLER_DEFAULTS

__all__ = [
    "MUENNIGHOFF_C4",
    "QUICK",
    "TRUE_CHINCHILLA",
    "hand_built_fit",
    "quick",
    "simulate_isoflop",
    "simulate_ladder",
]

#: Settings of the cheap plumbing fits (CLI, save/load, plots): enough to run, not to conclude.
QUICK = {"sampler": {"draws": 200, "tune": 300, "chains": 2}, "progressbar": False, "warn": False}


def quick(**changes: object) -> dict[str, object]:
    """:data:`QUICK` with some settings changed: sampler settings (``draws=``, ``backend=``, ...)
    go into its ``sampler``, the others (``warn=``, ``progressbar=``) replace QUICK's own."""
    sampler = {k: v for k, v in changes.items() if k in SAMPLER_DEFAULTS}
    rest = {k: v for k, v in changes.items() if k not in SAMPLER_DEFAULTS}
    return {**QUICK, "sampler": {**QUICK["sampler"], **sampler}, **rest}


@pytest.fixture(scope="session")
def chinchilla_fit() -> bs.Fit:
    """The default fit of the bundled Chinchilla runs (4 chains x 1000 draws): the replication."""
    return bs.fit("chinchilla", law="chinchilla", random_seed=20260101, progressbar=False)


@pytest.fixture(scope="session")
def quick_fit() -> bs.Fit:
    """A cheap fit of simulated runs for plumbing tests."""
    runs = simulate_ladder("chinchilla", TRUE_CHINCHILLA, seed=7)
    return bs.fit(runs, law="chinchilla", random_seed=3, **QUICK)


@pytest.fixture(scope="session")
def quick_fit_path(quick_fit: bs.Fit, tmp_path_factory: pytest.TempPathFactory):
    path = tmp_path_factory.mktemp("fits") / "quick.nc"
    quick_fit.save(path)
    return path


def hand_built_fit(
    law: str, runs, center: dict[str, float], rel_sd: float = 0.03, draws: int = 100, seed: int = 0
) -> bs.Fit:
    """A Fit whose posterior is hand-built draws around ``center`` (normal likelihood): no sampling.

    Each parameter is ``center * exp(rel_sd * z)``, z standard normal, over 2 chains.
    """
    import xarray as xr

    from bayescale.inference import container, diagnostics
    from bayescale.inference.sampling import SamplerConfig
    from bayescale.model.pymc_model import resolve_priors

    law_obj = bs.get_law(law)
    runs_obj = bs.Runs.from_any(runs)
    rng = np.random.default_rng(seed)
    values = {**center, "sigma": center.get("sigma", 0.01)}
    posterior = xr.Dataset(
        {
            k: (("chain", "draw"), v * np.exp(rel_sd * rng.standard_normal((2, draws))))
            for k, v in values.items()
        }
    )
    stats = xr.Dataset({"diverging": (("chain", "draw"), np.zeros((2, draws), dtype=bool))})
    idata = container.from_groups(posterior=posterior, sample_stats=stats)
    free, fixed = resolve_priors(law_obj, "normal")
    return bs.Fit(
        idata=idata,
        law=law_obj,
        runs=runs_obj,
        priors=free,
        fixed=fixed,
        likelihood="normal",
        sampler=SamplerConfig(draws=draws, chains=2),
        random_seed=seed,
        diagnostics=diagnostics.compute(idata, list(free)),
        warn=False,  # 200 iid draws: the ESS threshold for a sampler's output does not apply
    )


def simulate_isoflop(seed: int, jitter: float = 0.0, sigma: float = 0.005) -> pd.DataFrame:
    """IsoFLOP profiles drawn from the Chinchilla law: 5 budgets x 7 sizes around the optimum."""
    rng = np.random.default_rng(seed)
    law = bs.get_law("chinchilla")
    rows = []
    for budget in np.geomspace(1e18, 1e21, 5):
        best = law.optimal_allocation(TRUE_CHINCHILLA, np.array([budget]))["params"][0]
        for n in best * np.geomspace(0.15, 6.0, 7):
            c = budget * (1 + jitter * rng.uniform(-1, 1))
            d = c / (6 * n)
            loss = law.loss(TRUE_CHINCHILLA, n, d) * np.exp(rng.normal(0, sigma))
            rows.append({"params": n, "tokens": d, "compute": c, "loss": float(loss)})
    return pd.DataFrame(rows)
