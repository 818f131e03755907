import numpy as np
import pytest
from scipy.optimize import minimize_scalar

import bayescale as bs
from bayescale.errors import LawError

EPOCH = {"E": 1.81686, "A": 482.00572, "B": 2085.43420, "alpha_N": 0.34781, "alpha_D": 0.36585}


def test_chinchilla_loss_matches_formula():
    law = bs.get_law("chinchilla")
    N, D = np.array([1e8, 7e10]), np.array([2e9, 1.4e12])
    expected = EPOCH["E"] + EPOCH["A"] / N ** EPOCH["alpha_N"] + EPOCH["B"] / D ** EPOCH["alpha_D"]
    np.testing.assert_allclose(law.loss(EPOCH, N, D), expected, rtol=1e-12)


def test_log_space_mean_is_stable_at_extremes():
    law = bs.get_law("chinchilla")
    N, D = np.array([1e3, 1e15]), np.array([1e3, 1e16])
    values = law.loss(EPOCH, N, D)
    direct = EPOCH["E"] + EPOCH["A"] / N ** EPOCH["alpha_N"] + EPOCH["B"] / D ** EPOCH["alpha_D"]
    np.testing.assert_allclose(values, direct, rtol=1e-12)


def test_closed_form_optimum_matches_numerical_and_epoch():
    law = bs.get_law("chinchilla")
    C = 5.76e23
    best = law.optimal_allocation({k: np.float64(v) for k, v in EPOCH.items()}, C)
    # Minimise the loss along the iso-FLOP line D = C / (6 N) numerically.
    res = minimize_scalar(
        lambda logn: law.loss(EPOCH, np.exp(logn), C / (6 * np.exp(logn))),
        bounds=(np.log(1e8), np.log(1e13)),
        method="bounded",
        options={"xatol": 1e-10},
    )
    assert float(best["params"]) == pytest.approx(np.exp(res.x), rel=1e-5)
    # Epoch's headline estimate gives N_opt = 7.24e10, D/N = 18.3 at this budget (anchors card).
    assert float(best["params"]) == pytest.approx(7.24e10, rel=0.01)
    assert float(best["tokens"] / best["params"]) == pytest.approx(18.3, rel=0.01)
    assert float(best["a"]) == pytest.approx(0.513, abs=0.001)


def test_registry():
    assert "chinchilla" in bs.list_laws()
    with pytest.raises(LawError, match="unknown law 'nope'"):
        bs.get_law("nope")
    with pytest.raises(LawError, match=r"needs values for \['alpha_D'\]"):
        bs.get_law("chinchilla").loss({k: v for k, v in EPOCH.items() if k != "alpha_D"}, 1e9, 1e10)
