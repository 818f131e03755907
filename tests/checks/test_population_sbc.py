"""SBC of a small ladder's default: the population prior ``published-ladders`` and nu's prior (slow)."""

import warnings

import numpy as np
import pytest
from test_calibration import SBC_SAMPLER, serious_failures

import bayescale as bs
from bayescale.checks import calibration as cal
from bayescale.errors import RunsWarning

#: Three sizes at 5, 20 and 80 tokens per parameter: 6 training runs (a small ladder, which fits
#: with the population prior by default) and the 3 runs of the largest size held out.
SMALL_SIZES = (3e7, 1e8, 3e8)
SEEDS = (21, 22, 23)
SIMS = 10
#: Chance that the study fails although the fits are calibrated.
FALSE_ALARM = 0.01


@pytest.mark.slow
def test_sbc_of_the_small_ladder_default():
    """30 simulations drawn from the population prior and nu's default, fitted by the default.

    The fit is given no priors: with 6 runs it borrows ``published-ladders`` itself, so this
    checks what a user gets, not a prior passed by hand. Checks, fixed before any result was
    seen: KS and chi-square of the ranks of the 5 law parameters, sigma, nu and N_opt at 1e23
    FLOPs, and the ladder-level coverage of the held-out 90% intervals: m = 17 checks, each at
    0.01 / m (Bonferroni: at most 1% false alarms). With 30 simulations it catches gross
    miscalibration only (a posterior several times too narrow, or shifted by about 1 sd).
    """
    priors = bs.published_priors("published-ladders")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RunsWarning)  # the borrowed prior's note, on every fit
        result = cal.SBCResult.combine(
            [
                cal.sbc(
                    "chinchilla",
                    SIMS,
                    seed=seed,
                    sizes=SMALL_SIZES,
                    priors=priors,
                    fit_kwargs={"sampler": {**SBC_SAMPLER, "backend": "jax"}},
                )
                for seed in SEEDS
            ]
        )
    sims = SIMS * len(SEEDS)
    assert result.settings["train_runs"] == 6
    assert result.settings["fit_errors"] == []
    assert len(result.ranks) == sims
    assert serious_failures(result.ranks) <= sims // 5, result.ranks
    table = result.uniformity(seed=SEEDS[0])
    level = FALSE_ALARM / (2 * len(table) + 1)
    assert (table["ks_pvalue"] > level).all(), table
    assert (table["chi2_pvalue"] > level).all(), table
    low, high = cal.cluster_interval(
        result.ranks["heldout_covered"].to_numpy(), result.ranks["heldout_n"].to_numpy(), 1 - level
    )
    assert low <= 0.9 <= high, result.coverage()
    assert np.isfinite(result.ranks["N_opt_rank"]).all()
