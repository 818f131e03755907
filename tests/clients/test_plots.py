"""Figures: what each one draws (lines, bands, markers, scales, labels), on cheap posteriors."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from conftest import MUENNIGHOFF_C4, QUICK, hand_built_fit, simulate_isoflop
from matplotlib.collections import LineCollection, PathCollection, PolyCollection

import bayescale as bs
from bayescale import plots
from bayescale.plots import curves, kinds, references
from bayescale.plots._common import fmt

EPOCH = references.EPOCH_2024


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


@pytest.fixture(scope="module")
def epoch_fit():
    """Draws around Epoch's estimate, on the bundled Chinchilla runs (so references apply)."""
    return hand_built_fit("chinchilla", "chinchilla", EPOCH, rel_sd=0.01)


@pytest.fixture(scope="module")
def datablations_fit():
    return hand_built_fit("data-constrained", "datablations", MUENNIGHOFF_C4, rel_sd=0.05)


def bands(ax):
    return [c for c in ax.collections if isinstance(c, PolyCollection)]


def scatters(ax):
    return [c for c in ax.collections if isinstance(c, PathCollection)]


@pytest.mark.parametrize(("x", "fixed", "xunit"), [("compute", "N", "FLOPs"), ("params", "D", "count"),
                                                  ("tokens", "N", "count")])  # fmt: skip
def test_loss_draws_a_median_and_two_bands_per_curve(quick_fit, x, fixed, xunit):
    ax = plots.plot_loss(quick_fit, x, curves=[1e8, 1e9, 1e10])
    assert len(ax.lines) == 3
    assert len(bands(ax)) == 6  # 50% and 90% for each curve
    assert len(scatters(ax)) == 1 and len(scatters(ax)[0].get_offsets()) == len(quick_fit.runs)
    assert ax.get_xscale() == ax.get_yscale() == "log"
    assert xunit in ax.get_xlabel() and "nats/token" in ax.get_ylabel()
    assert [t.get_text() for t in ax.get_legend().get_texts()][2:] == [f"{fixed} = 1e8", f"{fixed} = 1e9",
                                                                      f"{fixed} = 1e10"]  # fmt: skip


def test_loss_median_curve_is_the_posterior_median_of_the_law(epoch_fit):
    ax = plots.plot_loss(epoch_fit, "tokens", curves=[1e9])
    line = ax.lines[0]
    d, y = line.get_xdata()[10], line.get_ydata()[10]
    draws = {k: np.asarray(epoch_fit.posterior[k]).ravel() for k in EPOCH}
    assert y == pytest.approx(np.median(bs.get_law("chinchilla").loss(draws, 1e9, d)), rel=1e-9)
    # the 90% band is wider than the 50% band at that point
    wide, narrow = (np.ptp(b.get_paths()[0].vertices[:, 1]) for b in bands(ax))
    assert wide > narrow > 0


def test_loss_rejects_unknown_x(quick_fit):
    with pytest.raises(bs.BayescaleError, match="x must be one of"):
        plots.plot_loss(quick_fit, "flops")


def test_isoflop_profiles_and_optima(epoch_fit):
    budgets = [1e19, 1e21, 1e23]
    ax = plots.plot_isoflop(epoch_fit, budgets=budgets)
    assert len(ax.lines) >= 3 and len(ax.containers) == 3  # one median curve and one optimum per budget
    assert ax.get_xscale() == ax.get_yscale() == "log"
    assert "[count]" in ax.get_xlabel() and "nats/token" in ax.get_ylabel()
    table = epoch_fit.optimal(budgets)
    for i, container in enumerate(ax.containers):
        x_opt = container.lines[0].get_xdata()[0]
        assert x_opt == pytest.approx(table["params_median"].iloc[i])
        curve = next(line for line in ax.lines if line.get_label() == f"C = 1e{19 + 2 * i}")
        x, y = curve.get_xdata(), curve.get_ydata()
        # The marker is the median of the draws' optima, the curve the median of the draws' losses: the
        # two minima differ by sampling noise, not by more than the optimum's 90% interval, and the
        # profile is flat there: the curve at the marker is within 0.05% of its minimum (a marker 1.5x
        # off the minimum sits 0.15-0.4% above it).
        argmin = x[np.argmin(y)]
        assert table["params_lower"].iloc[i] <= argmin <= table["params_upper"].iloc[i]
        assert np.interp(np.log(x_opt), np.log(x), y) <= 1.0005 * y.min()


def test_allocation_draws_both_quantities_and_published_points(epoch_fit, quick_fit):
    ax = plots.plot_allocation(epoch_fit)
    assert [line.get_label() for line in ax.lines] == ["N_opt, parameters", "D_opt, tokens"]
    assert len(bands(ax)) == 4  # 50% and 90% bands of each
    assert len(scatters(ax)) == 3  # Chinchilla 70B, Hoffmann's and Epoch's optima
    assert ax.get_xlim()[1] >= 1e26 and ax.get_yscale() == "log"
    # Epoch's optimum at 5.76e23 is the published derived value (anchors: N_opt 7.24e10, D_opt 1.33e12)
    epoch_point = scatters(ax)[2].get_offsets()
    assert epoch_point[0, 1] == pytest.approx(7.24e10, rel=0.01)
    assert epoch_point[1, 1] == pytest.approx(1.33e12, rel=0.01)
    # simulated runs get no published points unless asked
    assert len(scatters(plots.plot_allocation(quick_fit))) == 0
    assert len(scatters(plots.plot_allocation(quick_fit, references=True))) == 3


def test_figures_needing_an_allocation_or_repeats_refuse_other_laws(datablations_fit, quick_fit):
    with pytest.raises(bs.LawError, match="no compute-optimal allocation without unique tokens"):
        plots.plot_isoflop(datablations_fit)
    with pytest.raises(bs.LawError, match="no compute-optimal allocation without unique tokens"):
        plots.plot_allocation(datablations_fit)
    with pytest.raises(bs.LawError, match="repeated data"):
        plots.plot_epochs(quick_fit)


def test_frontier_of_a_law_without_closed_form(quick_fit):
    """Kaplan's L(N, D) has a numerical optimum only: its frontier is drawn as Fit.optimal answers it."""
    runs = quick_fit.runs.frame[["params", "tokens", "loss"]]
    kaplan = hand_built_fit(
        "kaplan", runs, {"N_c": 8.8e13, "D_c": 5.4e13, "alpha_N": 0.076, "alpha_D": 0.095}
    )
    ax = plots.plot_allocation(kaplan, compute_range=(1e20, 1e24))
    median = ax.get_lines()[0]
    grid, n_opt = median.get_xdata(), median.get_ydata()
    # The figure shows the answers Fit.optimal gives (beyond the runs, blended with the variant law).
    expected = kaplan.optimal(grid[[0, -1]])["params_median"].to_numpy()
    np.testing.assert_allclose(n_opt[[0, -1]], expected, rtol=1e-6)
    assert np.all(np.isfinite(n_opt)) and n_opt[-1] > 10 * n_opt[0]  # 1e4 x the budget, a larger model


def test_epochs_curves_and_runs_on_the_unique_data(datablations_fit):
    ax = plots.plot_epochs(datablations_fit, unique_tokens=1e8, params=[1.41e7, 1.465e8])
    assert len(ax.lines) == 2 and len(bands(ax)) == 4
    runs = datablations_fit.runs.frame
    on_u = runs[(runs["unique_tokens"] == 1e8) & runs["params"].isin([1.41e7, 1.465e8])]
    assert sum(len(s.get_offsets()) for s in scatters(ax)) == len(on_u) > 0
    assert ax.get_xscale() == "log" and "epochs" in ax.get_xlabel()
    # repeating data cannot lower the loss below that of fresh data: curves flatten, never rise steeply down
    y = ax.lines[0].get_ydata()
    assert np.all(np.diff(y) <= 1e-12)


def test_repeated_value_saturates_at_one_plus_r_d_star(datablations_fit):
    ax = plots.plot_repeated_value(datablations_fit, epochs=(1, 1e4))
    median = ax.lines[0].get_ydata()
    assert median[0] == pytest.approx(1.0)  # one epoch: D' = U
    ceiling = 1 + np.median(datablations_fit.posterior["R_D_star"])
    assert median[-1] == pytest.approx(ceiling, rel=1e-3)
    assert len(ax.lines) == 3 and len(bands(ax)) == 2  # median, diagonal, ceiling


def test_pair_plot_marks_published_estimates(epoch_fit, quick_fit):
    fig = plots.plot_pair(epoch_fit, ["E", "alpha_N", "alpha_D"])
    visible = [ax for ax in fig.axes if ax.axison]
    assert len(visible) == 6  # 3 diagonal histograms, 3 scatter panels below
    lower = fig.axes[3]  # row 1, col 0: alpha_N against E
    assert lower.get_xlabel() == "" and lower.get_ylabel() == "alpha_N"
    marks = [tuple(s.get_offsets()[0]) for s in scatters(lower)[1:]]
    assert marks == [(pytest.approx(references.HOFFMANN_2022["E"]), pytest.approx(0.33917084)),
                     (pytest.approx(EPOCH["E"]), pytest.approx(EPOCH["alpha_N"]))]  # fmt: skip
    plain = plots.plot_pair(quick_fit)
    assert all(len(scatters(ax)) <= 1 for ax in plain.axes)
    with pytest.raises(bs.BayescaleError, match="no parameter 'gamma'"):
        plots.plot_pair(quick_fit, ["gamma"])


def test_prior_posterior_has_one_panel_per_free_parameter(quick_fit):
    fig = plots.plot_prior_posterior(quick_fit, draws=500)
    panels = [ax for ax in fig.axes if ax.axison]
    assert len(panels) == len(quick_fit.free_parameters)
    for ax in panels:
        assert [line.get_label() for line in ax.lines] == ["prior", "posterior"]
        assert ax.get_xlabel().startswith("log10 ")  # every default prior is positive
        # the posterior is narrower than the prior
        width = [np.ptp(line.get_xdata()[line.get_ydata() > 0.5]) for line in ax.lines]
        assert width[1] < width[0]


def test_prior_posterior_rejects_fixed_parameters(datablations_fit):
    fit = hand_built_fit("chinchilla", "chinchilla", EPOCH)
    fit.fixed["E"] = 1.8
    fit.priors.pop("E")
    with pytest.raises(bs.BayescaleError, match="no prior for"):
        plots.plot_prior_posterior(fit, ["E"])


def test_residuals_and_ppc_count_runs_inside(quick_fit):
    ax = plots.plot_residuals(quick_fit)
    n_inside, n_outside = (len(s.get_offsets()) for s in scatters(ax))
    assert n_inside + n_outside == len(quick_fit.runs)
    assert f"{n_inside} of {len(quick_fit.runs)} runs" in ax.get_title()
    assert n_inside / len(quick_fit.runs) > 0.7  # simulated from the law: most runs inside 90%
    assert any(isinstance(c, LineCollection) for c in ax.collections)
    assert ax.get_xscale() == "log" and "[%]" in ax.get_ylabel()
    ax = plots.plot_ppc(quick_fit)
    assert f"{n_inside} of {len(quick_fit.runs)} runs" in ax.get_title()  # same seed, same intervals
    assert ax.get_xscale() == ax.get_yscale() == "log"


def test_prior_predictive_draws_nested_intervals_per_run(quick_fit):
    draws = bs.prior_predictive("chinchilla", quick_fit.runs, draws=200, random_seed=1)
    ax = plots.plot_prior_predictive(draws, quick_fit.runs)
    intervals = [c for c in ax.collections if isinstance(c, LineCollection)]
    assert len(intervals) == 2 and all(len(c.get_segments()) == len(quick_fit.runs) for c in intervals)
    assert ax.get_yscale() == "log"
    with pytest.raises(bs.BayescaleError, match="prior_predictive output"):
        plots.plot_prior_predictive(draws, quick_fit.runs.frame.iloc[:5])


def elpd_table():
    return pd.DataFrame(
        {"elpd_loo": [410.0, 402.5, 380.0], "se": [12.0, 11.0, 15.0], "elpd_diff": [0.0, 7.5, 30.0],
         "dse": [0.0, 3.0, 9.0]},
        index=["chinchilla", "data-constrained", "kaplan"],
    )  # fmt: skip


def test_elpd_ranks_laws_with_error_bars():
    table = elpd_table().iloc[[2, 0, 1]]  # order of the input must not matter
    ax = plots.plot_elpd(table)
    ticks = {t.get_text(): t.get_position()[1] for t in ax.get_yticklabels()}
    assert sorted(ticks, key=ticks.get, reverse=True) == ["chinchilla", "data-constrained", "kaplan"]
    main, diff = ax.containers
    assert sorted(main.lines[0].get_xdata()) == [380.0, 402.5, 410.0]
    assert sorted(diff.lines[0].get_xdata()) == [380.0, 402.5]  # best minus difference, others only
    assert "ELPD" in ax.get_xlabel()
    with pytest.raises(bs.BayescaleError, match=r"column\(s\) \['dse'\]"):
        plots.plot_elpd(table.drop(columns="dse"))


def extrapolation_table():
    n = np.array([1e8, 3e8, 1e9, 3e9, 1e10])
    return pd.DataFrame({
        "params": n, "tokens": 20 * n, "loss": [3.1, 2.8, 2.5, 2.3, 2.1],
        "split": ["train", "train", "train", "test", "test"],
        "loss_predictive_median": [np.nan, np.nan, np.nan, 2.32, 2.2],
        "loss_predictive_lower": [np.nan, np.nan, np.nan, 2.25, 2.15],
        "loss_predictive_upper": [np.nan, np.nan, np.nan, 2.4, 2.3],
    })  # fmt: skip


def test_extrapolation_marks_held_out_runs_inside_their_intervals():
    ax = plots.plot_extrapolation(extrapolation_table(), prob=0.9)
    assert "1 of 2 held-out runs inside" in ax.get_title()  # 2.1 is below [2.15, 2.3]
    train, test = scatters(ax)
    assert len(train.get_offsets()) == 3 and len(test.get_offsets()) == 2
    assert ax.containers[0].lines[0].get_xdata() == pytest.approx(6 * 20 * np.array([3e9, 1e10]) ** 2)
    assert ax.get_xscale() == ax.get_yscale() == "log"
    bad = extrapolation_table().assign(split=["train"] * 4 + ["holdout"])
    with pytest.raises(bs.BayescaleError, match="'holdout'"):
        plots.plot_extrapolation(bad)


def test_pair_plot_shows_E_and_both_exponents_by_default(epoch_fit):
    fig = plots.plot_pair(epoch_fit)
    diagonal = [fig.axes[i * 4] for i in range(3)]  # 3 x 3 grid
    assert [ax.get_xlabel() for ax in diagonal[-1:]] == ["alpha_D"]
    assert [fig.axes[6 + i].get_xlabel() for i in range(3)] == ["E", "alpha_N", "alpha_D"]
    assert len([ax for ax in fig.axes if ax.axison]) == 6


def test_epochs_default_unique_data_is_the_one_with_most_sizes(datablations_fit):
    runs = datablations_fit.runs.frame
    unique, sizes = curves.default_unique(datablations_fit)
    on_u = runs[runs["unique_tokens"] == unique]
    assert on_u["params"].nunique() == runs.groupby("unique_tokens")["params"].nunique().max() == 12
    assert len(sizes) == 4 and set(sizes) <= set(on_u["params"])
    ax = plots.plot_epochs(datablations_fit)
    assert len(ax.lines) == 4 and f"U = {fmt(unique)}" in ax.get_title()


def test_epochs_default_when_every_run_has_its_own_unique_data():
    """No U shared by two sizes: the median U and four sizes spanning the runs, not one curve."""
    frame = bs.Runs.from_any("datablations").frame.drop_duplicates("unique_tokens")
    fit = hand_built_fit("data-constrained", frame, MUENNIGHOFF_C4, rel_sd=0.05)
    unique, sizes = curves.default_unique(fit)
    assert unique == np.sort(frame["unique_tokens"])[(len(frame) - 1) // 2]
    assert len(sizes) == 4 and sizes[0] == frame["params"].min() and sizes[-1] == frame["params"].max()
    assert len(plots.plot_epochs(fit).lines) == 4


def test_loss_x_range_sets_the_curves_span(quick_fit):
    ax = plots.plot_loss(quick_fit, "compute", curves=[1e9], x_range=(1e17, 1e25))
    x = ax.lines[0].get_xdata()
    assert x[0] == pytest.approx(1e17) and x[-1] == pytest.approx(1e25)
    assert ax.get_xlim() == pytest.approx((1e17, 1e25))
    for bad in [(1e20, 1e18), (0, 1e20), (1e18, np.inf), (1e18,)]:
        with pytest.raises(bs.BayescaleError, match="x_range must be two finite numbers 0 < low < high"):
            plots.plot_loss(quick_fit, "compute", x_range=bad)


def test_kinds_frontier_is_the_allocation_and_loss_frontier_the_loss(quick_fit):
    ax = kinds.draw("frontier", quick_fit)
    assert [line.get_label() for line in ax.lines] == ["N_opt, parameters", "D_opt, tokens"]
    ax = kinds.draw("loss-frontier", quick_fit, kinds.PlotOptions(x_range=(1e18, 1e24)))
    assert ax.lines[0].get_label() == "compute-optimal loss (posterior median)"
    assert ax.lines[0].get_xdata()[-1] == pytest.approx(1e24)


def test_kinds_pass_budgets_sizes_and_unique_data(quick_fit, datablations_fit):
    ax = kinds.draw("isoflop", quick_fit, kinds.PlotOptions(compute=[1e19, 1e21]))
    assert len(ax.containers) == 2  # one optimum per budget
    ax = kinds.draw("loss-tokens", quick_fit, kinds.PlotOptions(params=[1e8, 1e9, 1e10]))
    assert [t.get_text() for t in ax.get_legend().get_texts()][2:] == ["N = 1e8", "N = 1e9", "N = 1e10"]
    options = kinds.PlotOptions(unique_tokens=4e8, params=[1e8], x_range=(1, 50))
    ax = kinds.draw("epochs", datablations_fit, options)
    assert len(ax.lines) == 1 and "U = 4e8" in ax.get_title()
    assert ax.lines[0].get_xdata()[-1] == pytest.approx(50)


def test_kinds_refuse_options_they_do_not_take(quick_fit):
    with pytest.raises(bs.BayescaleError, match="--params does not apply to the 'pair' figure; it applies to "
                                                "epochs, loss, loss-tokens"):  # fmt: skip
        kinds.draw("pair", quick_fit, kinds.PlotOptions(params=[1e9]))
    with pytest.raises(bs.BayescaleError, match="unknown figure kind 'contour'"):
        kinds.draw("contour", quick_fit)


def test_kind_prior_predictive_uses_the_fits_priors(quick_fit):
    ax = kinds.draw("prior-predictive", quick_fit)
    observed = scatters(ax)[-1]
    assert len(observed.get_offsets()) == len(quick_fit.runs)
    assert "Prior predictive" in ax.get_title()


@pytest.fixture(scope="module")
def isoflop_fit():
    from bayescale.methods.isoflop import fit_isoflop

    return fit_isoflop(simulate_isoflop(seed=4), random_seed=5, **QUICK)


def test_isoflop_fit_figure_draws_each_budget_and_the_line_of_optima(isoflop_fit, quick_fit):
    fig = kinds.draw("isoflop-fit", isoflop_fit)
    left, right = fig.axes[:2]
    used = isoflop_fit.budgets[isoflop_fit.budgets["used"]]
    profiles = [line for line in left.lines if len(line.get_xdata()) == 60]  # not the error bars' lines
    assert len(profiles) == len(used) and len(left.containers) == len(right.containers) == len(used)
    # each profile's lowest point is at its budget's optimum (grid spacing ~ 10^(2/60) ~ 8%)
    post = isoflop_fit.posterior
    for i, line in enumerate(profiles):
        n_opt = float(np.exp(post["log_params_opt"].isel(budget=i)).median())
        assert line.get_xdata()[np.argmin(line.get_ydata())] == pytest.approx(n_opt, rel=0.1)
    assert "a = " in right.get_title() and right.get_xscale() == "log"
    with pytest.raises(bs.BayescaleError, match="'isoflop' figure needs a parametric fit"):
        kinds.draw("isoflop", isoflop_fit)


def test_default_held_out_threshold_is_a_power_of_ten_below_most_runs(quick_fit):
    compute = quick_fit.runs.frame["compute"]
    threshold = kinds.default_train_below(quick_fit)
    assert np.log10(threshold) == int(np.log10(threshold))
    assert threshold <= np.quantile(compute, 0.8) < 10 * threshold
    assert (compute >= threshold).mean() >= 0.2


@pytest.mark.slow
def test_kind_extrapolation_refits_below_the_threshold(quick_fit):
    """Two fits (the law and, beyond its runs, the variant law) on the runs below 1e20 FLOPs."""
    ax = kinds.draw("extrapolation", quick_fit, kinds.PlotOptions(train_below=1e20))
    compute = quick_fit.runs.frame["compute"]
    train, test = scatters(ax)
    assert (
        len(train.get_offsets()) == (compute < 1e20).sum()
        and len(test.get_offsets()) == (compute >= 1e20).sum()
    )
    assert ax.get_title().startswith("chinchilla law fitted below 1e+20 FLOPs:\n")
    assert "held-out runs inside their interval" in ax.get_title()


def test_epochs_at_25e9_unique_tokens_have_no_steps_across_the_edge_of_the_runs(datablations_fit):
    """Answers with unique tokens never mix in a law blind to them (issue 35): no step where the runs end.

    7e9 parameters on 25e9 unique tokens: 2.15e11 tokens lie inside the runs' largest compute,
    2.25e11 just beyond. Mixing in kaplan-e there once jumped the loss by 0.056 nats; the single
    law moves by about 0.002.
    """
    fit = datablations_fit
    pair = fit.predict(7e9, [2.15e11, 2.25e11], unique_tokens=25e9, random_seed=0)
    single = fit.predict(7e9, [2.15e11, 2.25e11], unique_tokens=25e9, random_seed=0, average_beyond=False)
    assert pair["compute_multiple"].iloc[0] <= 1 < pair["compute_multiple"].iloc[1]  # the edge is between
    for stat in ("median", "lower", "upper"):
        step = np.diff(pair[f"loss_{stat}"].to_numpy())[0]
        alone = np.diff(single[f"loss_{stat}"].to_numpy())[0]
        assert abs(step - alone) < 1e-3, (stat, step, alone)
    ax = plots.plot_epochs(fit, unique_tokens=25e9, params=[7e9])
    epochs, median = ax.lines[0].get_xdata(), ax.lines[0].get_ydata()
    assert epochs[0] == pytest.approx(1.0) and epochs[-1] == pytest.approx(100.0)  # through 8.5 and 21
    table = fit.predict(7e9, epochs * 25e9, unique_tokens=25e9, random_seed=0)
    np.testing.assert_allclose(median, table["loss_median"], rtol=1e-9)
    for stat in ("median", "lower", "upper"):
        y = table[f"loss_{stat}"].to_numpy()
        steps = np.abs(np.diff(np.log(y)))
        assert steps.max() < 5 * np.median(steps), stat  # smooth: the old steps were tens of median steps
        assert np.all(np.diff(y) <= 1e-4), stat  # more repetitions never raise the loss


def test_plans_figure_draws_epochs_and_skips_a_law_without_a_plan():
    plans = pd.DataFrame(
        {
            **{f"{q}_{s}": [v * f, np.nan] for q, v in (("params", 7e9), ("tokens", 2.4e11), ("loss", 2.2))
               for s, f in (("median", 1.0), ("lower", 0.8), ("upper", 1.25))},
            **{f"epochs_{s}": [9.5 * f, np.nan]
               for s, f in (("median", 1.0), ("lower", 0.7), ("upper", 1.4))},
        },
        index=pd.Index(["data-constrained", "kaplan-n"], name="law"),
    )  # fmt: skip
    plans.attrs.update(budget=1e22, unique_tokens=25e9, prob=0.9)
    fig = plots.plot_plans(plans, believe="data-constrained")
    assert [ax.get_xlabel() for ax in fig.axes][-1] == "epochs D / U"
    assert all(len(ax.lines) == 2 for ax in fig.axes)  # a bar and a dot for the one law with a plan
    assert fig.axes[3].lines[1].get_xdata()[0] == pytest.approx(9.5)
    assert fig._suptitle.get_text() == (
        "The laws' plans side by side at C = 1e22 FLOPs, U = 2.5e10 unique tokens (median, 90% interval)"
    )
    with pytest.raises(bs.BayescaleError, match=r"plot_plans needs column\(s\) \['loss_median'"):
        plots.plot_plans(plans.drop(columns="loss_median"))
