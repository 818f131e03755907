import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import QUICK, TRUE_CHINCHILLA, simulate_ladder

import bayescale as bs
from bayescale.cli import main
from bayescale.errors import PriorError
from bayescale.model.prior_sets import prior_set_info


def test_epoch_set_is_centred_on_the_published_refit():
    priors = bs.published_priors("epoch-chinchilla", widen=3.0)
    assert set(priors) == {"E", "A", "B", "alpha_N", "alpha_D"}
    assert priors["A"].distribution == "LogNormal"
    assert priors["A"].kwargs["mu"] == pytest.approx(np.log(482.00572))
    assert priors["A"].kwargs["sigma"] == pytest.approx(3.0 * 0.258)
    # SE of alpha (0.0154) relative to the estimate (0.34781), widened.
    assert priors["alpha_N"].kwargs["sigma"] == pytest.approx(3.0 * 0.0154 / 0.34781, rel=1e-3)


def test_subset_and_errors():
    assert set(bs.published_priors("epoch-chinchilla", parameters=["alpha_N", "alpha_D"])) == {
        "alpha_N",
        "alpha_D",
    }
    with pytest.raises(PriorError, match="unknown prior set 'hoffmann'"):
        bs.published_priors("hoffmann")
    with pytest.raises(PriorError, match=r"no estimate of \['R_D_star'\]"):
        bs.published_priors("epoch-chinchilla", parameters=["R_D_star"])
    with pytest.raises(PriorError, match="widen must be"):
        bs.published_priors("epoch-chinchilla", widen=0)


@pytest.mark.slow  # a statistical check over several fits (the default suite keeps its budget)
def test_informed_priors_shrink_the_plan_interval_of_a_small_ladder():
    # Ten small runs (5e7-3e8 params) cannot pin down the data term; Epoch's refit can.
    runs = simulate_ladder(
        "chinchilla", TRUE_CHINCHILLA, seed=11, sizes=np.geomspace(5e7, 3e8, 5), multipliers=(10, 40)
    )
    default = bs.fit(runs, random_seed=5, **QUICK)
    informed = bs.fit(runs, priors=bs.published_priors("epoch-chinchilla"), random_seed=5, **QUICK)
    truth = bs.get_law("chinchilla").optimal_allocation(TRUE_CHINCHILLA, 5.76e23)["params"]

    def log_width(fit):  # the law's own posterior: the priors act on it (the variant law has its own)
        row = fit.optimal(5.76e23, average_beyond=False).iloc[0]
        return np.log(row["params_upper"] / row["params_lower"]), row

    wide, _ = log_width(default)
    narrow, row = log_width(informed)
    assert narrow < 0.5 * wide
    assert row["params_lower"] <= truth <= row["params_upper"]


def test_cli_priors_from(tmp_path, capsys):
    runs = simulate_ladder("chinchilla", TRUE_CHINCHILLA, seed=3)
    path = tmp_path / "runs.csv"
    runs.to_csv(path, index=False)
    status = main(
        [
            "fit",
            str(path),
            "--out",
            str(tmp_path / "f.nc"),
            "--priors-from",
            "epoch-chinchilla",
            "--draws",
            "100",
            "--tune",
            "100",
            "--chains",
            "1",
            "--seed",
            "1",
        ]
    )
    assert status == 0
    with pytest.warns(bs.FitWarning, match="failed its diagnostics"):  # 100 draws of one chain
        fit = bs.load_fit(tmp_path / "f.nc")
    assert fit.priors["B"] == bs.published_priors("epoch-chinchilla")["B"]
    assert main(["fit", str(path), "--out", str(tmp_path / "g.nc"), "--widen", "3"]) == 2
    assert "--widen goes with --priors-from" in capsys.readouterr().err


ANCHORS = Path(__file__).resolve().parents[2] / ".." / "shared" / "anchors"
NO_LICENCE = ("misfitting", "llama3")  # anchors without a licence: internal test use only


def test_population_set_is_the_spread_between_ladders_with_its_provenance():
    info = prior_set_info("published-ladders")
    assert info["law"] == "chinchilla" and info["widen"] == 1.0
    priors = bs.published_priors("published-ladders")  # the set's own widen: 1
    estimates = info["estimates"]
    assert set(priors) == {"E", "A", "B", "alpha_N", "alpha_D", "sigma"}
    for name, prior in priors.items():
        assert prior.kwargs["sigma"] == pytest.approx(estimates[name]["log_se"])
        assert prior.kwargs["mu"] == pytest.approx(np.log(estimates[name]["value"]))
    assert bs.published_priors("published-ladders", widen=2)["alpha_N"].kwargs["sigma"] == pytest.approx(
        2 * estimates["alpha_N"]["log_se"]
    )
    # Each parameter's centre is the papers' weighted mean of the fits it lists (each paper weighs 1).
    fits = info["fits"]
    papers: dict[str, list[float]] = {}
    for ladder, fit in fits.items():
        if "alpha_N" in fit:
            papers.setdefault(ladder.split("-")[0], []).append(np.log(fit["alpha_N"]))
    centre = np.mean([np.mean(v) for v in papers.values()])
    assert np.log(estimates["alpha_N"]["value"]) == pytest.approx(centre, abs=1e-4)
    assert estimates["alpha_N"]["papers"] == len(papers) >= 4
    # Provenance: every ladder named with its licence; none of the unlicensed anchors.
    assert set(info["ladders"]) == set(fits)
    assert all("licence" in text or "cited" in text for text in info["ladders"].values())
    assert not any(ladder.startswith(NO_LICENCE) for ladder in fits)


@pytest.mark.slow
@pytest.mark.skipif(not (ANCHORS / "olmo-ladder").is_dir(), reason="shared anchors not present")
def test_population_set_is_what_the_script_learns():
    """benchmarks/population_prior.py regenerates the shipped numbers (least squares on every ladder)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    import population_prior

    shipped = prior_set_info("published-ladders")
    learnt = population_prior.population_prior()
    for name, estimate in shipped["estimates"].items():
        assert learnt["estimates"][name]["value"] == pytest.approx(estimate["value"], rel=1e-3)
        assert learnt["estimates"][name]["log_se"] == pytest.approx(estimate["log_se"], abs=1e-3)
    # Leaving a paper out moves the prior: its ladders no longer inform it.
    without = population_prior.population_prior(["gadre-rpj"])
    assert not any(ladder.startswith("gadre") for ladder in without["fits"])
    assert without["estimates"]["alpha_N"]["papers"] == shipped["estimates"]["alpha_N"]["papers"] - 1
