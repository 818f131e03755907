import numpy as np
import pytest
from conftest import QUICK, TRUE_CHINCHILLA, simulate_ladder

import bayescale as bs
from bayescale.cli import main
from bayescale.errors import PriorError


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
