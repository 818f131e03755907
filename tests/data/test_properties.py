"""Property-based tests (hypothesis): validation never lets bad input through, answers stay finite."""

import warnings

import arviz as az
import numpy as np
import pandas as pd
import pytest
from conftest import MUENNIGHOFF_C4, TRUE_CHINCHILLA
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import bayescale as bs
from bayescale.data.schema import NUMERIC_COLUMNS
from bayescale.errors import BayescaleError, RunsError
from bayescale.inference.sampling import SamplerConfig
from bayescale.methods.parametric import Fit
from bayescale.model.pymc_model import resolve_priors

# --- Validation: any table loads into valid Runs or raises RunsError ------------------------------

NAMES = st.sampled_from(
    [
        *("params", "tokens", "loss", "unique_tokens", "compute", "group", "N", "D", "L", "U", "C"),
        *("parms", "Tokens ", "val_loss", "flops", "epochs", "", "0", "loss ", "dataset", "n_params"),
    ]
)
CELLS = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=1e-3, max_value=1e16),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.text(max_size=6),
    st.sampled_from(["1e9", " 3.2 ", "nan", "inf", "-1", "1_000", "1,000", "", "NaN"]),
    st.none(),
    st.booleans(),
    st.just(pd.NA),
    st.lists(st.integers(), max_size=2),
)


@st.composite
def tables(draw):
    columns = draw(st.lists(NAMES, min_size=0, max_size=7))
    rows = draw(st.integers(min_value=0, max_value=6))
    data = {}
    for i, name in enumerate(columns):
        kind = draw(st.sampled_from(["clean", "mixed"]))
        if kind == "clean":
            values = draw(st.lists(st.floats(min_value=1e-2, max_value=1e15), min_size=rows, max_size=rows))
        else:
            values = draw(st.lists(CELLS, min_size=rows, max_size=rows))
        data[(name, i)] = pd.Series(values, dtype=object)
    frame = pd.DataFrame(data, index=range(rows)) if data else pd.DataFrame(index=range(rows))
    frame.columns = [name for name, _ in data]
    return frame


def check_valid(runs):
    assert isinstance(runs, bs.Runs) and len(runs) > 0
    for col in NUMERIC_COLUMNS:
        if col in runs.frame.columns:
            values = runs.column(col)
            assert np.all(np.isfinite(values)) and np.all(values > 0), col
    assert np.all(runs.column("loss") <= 20)
    if runs.has_unique_tokens:
        assert np.all(runs.column("unique_tokens") <= runs.column("tokens") * (1 + 1e-9))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tables())
def test_any_table_loads_valid_or_raises_runs_error(frame):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning but RunsWarning (overflow, casting) is a bug
        warnings.simplefilter("ignore", bs.RunsWarning)
        try:
            runs = bs.Runs.from_any(frame)
        except RunsError:
            return
    check_valid(runs)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_any_file_loads_valid_or_raises_runs_error(tmp_path_factory, content):
    path = tmp_path_factory.mktemp("files") / "runs.csv"
    path.write_bytes(content)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bs.RunsWarning)
        try:
            runs = bs.Runs.from_any(path)
        except RunsError:
            return
    check_valid(runs)


# --- Numerical range: N 1e3..1e15, D up to 1e16, budgets 1e15..1e30 --------------------------------

#: Published point estimates, used as a (tight) hand-built posterior for each law.
PUBLISHED = {
    "chinchilla": TRUE_CHINCHILLA,
    "data-constrained": MUENNIGHOFF_C4,
    "kaplan": {"N_c": 8.8e13, "D_c": 5.4e13, "alpha_N": 0.076, "alpha_D": 0.103},
    "kaplan-n": {"N_c": 8.8e13, "alpha_N": 0.076},
    "kaplan-d": {"D_c": 5.4e13, "alpha_D": 0.095},
}


def hand_built_fit(law, center, spread=0.1, nu=4.0, draws=200, seed=0):
    """A Fit whose posterior is lognormal scatter around published values: no sampling."""
    rng = np.random.default_rng(seed)
    posterior = {k: v * np.exp(rng.normal(0, spread, (2, draws))) for k, v in center.items()}
    posterior["sigma"] = np.full((2, draws), 0.02)
    posterior["nu"] = np.full((2, draws), nu)
    law_obj = bs.get_law(law)
    frame = pd.DataFrame({"params": [1e8, 1e9], "tokens": [2e9, 2e10], "unique_tokens": [2e9, 2e10]})
    frame["loss"] = [3.0, 2.5]
    priors, _ = resolve_priors(law_obj, "student_t")
    return Fit(
        idata=az.from_dict({"posterior": posterior}),
        law=law_obj,
        runs=bs.Runs.from_any(frame),
        priors=priors,
        fixed={},
        likelihood="student_t",
        sampler=SamplerConfig(),
        random_seed=0,
        diagnostics={"ok": True, "problems": [], "r_hat": {}, "ess_bulk": {}},
    )


FITS = {law: hand_built_fit(law, center) for law, center in PUBLISHED.items()}
LOG_N = st.floats(min_value=3.0, max_value=15.0)
LOG_D = st.floats(min_value=3.0, max_value=16.0)


@settings(max_examples=60, deadline=None)
@given(law=st.sampled_from(sorted(FITS)), log_n=LOG_N, log_d=LOG_D, frac=st.floats(1e-6, 1.0))
def test_predict_is_finite_over_the_whole_range(law, log_n, log_d, frac):
    N, D = 10.0**log_n, 10.0**log_d
    U = max(D * frac, 1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = FITS[law].predict([N, 1e3, 1e15], [D, 1e16, 1e3], unique_tokens=[U, 1e16, 1e3])
    for column in ("loss_median", "loss_lower", "loss_upper"):
        values = table[column].to_numpy()
        assert np.all(np.isfinite(values)) and np.all(values > 0), (column, table)
    assert np.all(np.isfinite(table["loss_predictive_median"]))


@settings(max_examples=60, deadline=None)
@given(log_c=st.floats(min_value=15.0, max_value=30.0), nu=st.floats(min_value=0.5, max_value=50.0))
def test_optimal_is_finite_over_budgets(log_c, nu):
    fit = hand_built_fit("chinchilla", TRUE_CHINCHILLA, nu=nu)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        table = fit.optimal([10.0**log_c, 1e15, 1e30])
    numbers = table.to_numpy(dtype=float)
    assert np.all(np.isfinite(numbers)) and np.all(numbers > 0), table
    # C = 6 N D holds for the median allocation's draws, so the medians sit near the budget.
    assert np.all(
        np.abs(np.log(6 * table["params_median"] * table["tokens_median"] / table["compute"])) < 1.0
    )


@pytest.mark.parametrize(
    ("law", "message"),
    [
        ("kaplan-n", r"depends on \['params'\] only"),
        ("data-constrained", "needs unique_tokens"),
    ],
)
def test_optimal_that_cannot_be_planned_is_a_clear_error(law, message):
    with pytest.raises(BayescaleError, match=message):
        FITS[law].optimal(1e24)


def test_numerical_optimum_is_finite_over_budgets():
    table = FITS["kaplan"].optimal([1e15, 1e24, 1e30])
    assert np.all(np.isfinite(table.to_numpy(dtype=float))), table


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(log_n=LOG_N, log_d=LOG_D, log_c=st.floats(min_value=15.0, max_value=30.0))
def test_real_posterior_answers_are_finite(quick_fit, log_n, log_d, log_c):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        predicted = quick_fit.predict(10.0**log_n, 10.0**log_d)
        best = quick_fit.optimal(10.0**log_c)
    assert np.all(np.isfinite(predicted.to_numpy(dtype=float)))
    assert np.all(np.isfinite(best.to_numpy(dtype=float)))


@pytest.mark.parametrize("bad", [0.0, -1e9, np.nan, np.inf, "x"])
def test_bad_queries_are_clear_errors(bad):
    with pytest.raises(BayescaleError, match=r"must be finite and > 0|must be a number"):
        FITS["chinchilla"].predict(bad, 1e10)
    with pytest.raises(BayescaleError, match=r"must be finite and > 0|must be a number"):
        FITS["chinchilla"].optimal(bad)
