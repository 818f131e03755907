"""The HTML report: self-contained, with the tables and every figure; and the CLI that writes it."""

import html
import re
import warnings

import matplotlib
import numpy as np

matplotlib.use("Agg")

import pytest
from conftest import MUENNIGHOFF_C4, hand_built_fit

import bayescale as bs
from bayescale import report
from bayescale.cli import PLOTS, main
from bayescale.plots import kinds

IMAGE = re.compile(r'<img [^>]*src="data:image/png;base64,[A-Za-z0-9+/=]{1000,}"')
REMOTE = re.compile(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", re.IGNORECASE)


def test_report_is_self_contained_with_tables_and_figures(quick_fit):
    text = report.build_report(quick_fit, compute=[1e22, 1e23])
    assert not REMOTE.search(text) and "<script" not in text
    # every figure, and the law comparison's
    assert len(IMAGE.findall(text)) == len(report.figures(quick_fit)) + 2 == 9
    summary = quick_fit.summary()
    for name in summary.index:  # parameter table, with the posterior median of each parameter
        assert f'<td class="l">{name}</td>' in text
        assert f"<td>{report.number(summary.loc[name, 'median'])}</td>" in text
    assert (
        '<td class="l">1e22</td>' in text and '<td class="l">1e23</td>' in text
    )  # plan rows, one per budget
    assert f"{len(quick_fit.runs)} runs" in text
    assert ("passed" if quick_fit.diagnostics["ok"] else "FAILED") in text
    assert all(
        html.escape(p) in text for p in quick_fit.diagnostics["problems"]
    )  # each failed check is listed


def test_report_tables_have_one_header_row_and_readable_numbers(quick_fit):
    """No pandas index-name row; ESS a whole count, r_hat 3 decimals; the plan in 6 columns."""
    text = report.build_report(quick_fit, compute=[1e22, 1e23])
    tables = re.findall(r"<table>(.*?)</table>", text, re.DOTALL)
    assert len(tables) == 5  # data, parameters, plan, law comparison, extrapolation
    for table in tables:
        assert table.count("<tr>", 0, table.index("</thead>")) == 1
        assert "<th></th>" not in table and '<th class="l"></th>' not in table
    params = next(t for t in tables if "bulk ESS" in t)
    rows = re.findall(r"<tr>(.*?)</tr>", params.split("<tbody>")[1])
    summary = quick_fit.summary()
    for name, row in zip(summary.index, rows, strict=True):
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row)
        assert cells[0] == name
        assert cells[4] == f"{summary.loc[name, 'r_hat']:.3f}"
        assert cells[5] == str(round(summary.loc[name, "ess_bulk"]))
    plan = next(t for t in tables if "N_opt [parameters]" in t and "beyond the runs" in t)
    # a, b get columns only when they differ between budgets (beyond the runs the blend with the
    # second law grows with the distance, so they do there); otherwise one line above the table
    answer = quick_fit.optimal([1e22, 1e23])
    varies = not np.allclose(answer["a_median"], answer["a_median"].iloc[0], rtol=1e-6)
    assert len(re.findall(r"<th[ >]", plan.split("</thead>")[0])) == (8 if varies else 6)
    assert "x compute" in plan


def test_report_compares_laws_and_shows_the_extrapolation(quick_fit):
    text = report.build_report(quick_fit, compute=[1e23])
    comparison = text.split("<h2>Law comparison</h2>")[1].split("<h2>")[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bs.LooWarning)  # QUICK fits fail the ESS check; the report shows it
        table = bs.compare({"chinchilla": quick_fit, "kaplan-e": quick_fit.variant_fit()})
    for law, row in table.iterrows():
        assert f'<td class="l">{law}</td><td>{row["elpd_loo"]:.1f} ± {row["se"]:.1f}</td>' in comparison
    assert len(IMAGE.findall(comparison)) == 2  # ELPD, and the two laws' plans side by side
    assert "own plans at C = 1e23 FLOPs" in comparison
    # Checked inputs: a fit that failed its diagnostics is named in the comparison section.
    assert not quick_fit.diagnostics["ok"]
    assert '<p class="warning">warning: &#39;chinchilla&#39; failed its diagnostics' in comparison
    extrapolation = text.split("<h2>Extrapolation</h2>")[1].split("<h2>")[0]
    own = quick_fit.optimal(1e23, average_beyond=False).iloc[0]
    other = quick_fit.variant_fit().optimal(1e23, average_beyond=False).iloc[0]
    assert f"<td>{report.number(own['params_median'])}<br>" in extrapolation
    assert f"<td>{report.number(other['params_median'])}<br>" in extrapolation
    assert "--train-below" in extrapolation  # how to add the held-out check


def test_report_pair_plot_shows_E_and_both_exponents(quick_fit):
    captions = [c for c, _ in report.figures(quick_fit)]
    assert "Joint posterior of E, alpha_N, alpha_D (pair plot)." in captions


def test_number_formatting():
    assert report.number(3.4056e10) == "3.406e10"
    assert report.number(773.2) == "773.2"
    assert report.number(1e-3) == "0.001"
    assert report.number(2.5e-5) == "2.5e-5"
    assert report.number(float("inf")) == "inf"


def test_report_of_a_law_without_closed_form_plan(tmp_path):
    fit = hand_built_fit("data-constrained", "datablations", MUENNIGHOFF_C4)
    path = report.write_report(fit, tmp_path / "dc.html")
    text = path.read_text()
    assert "no closed-form compute-optimal allocation" in text
    captions = [c for c, _ in report.figures(fit)]
    assert any("epochs" in c for c in captions) and not any("IsoFLOP" in c for c in captions)
    assert len(IMAGE.findall(text.split("<h2>Figures</h2>")[1])) == len(captions)


def test_report_rejects_bad_budgets(quick_fit, tmp_path):
    with pytest.raises(bs.BayescaleError, match="budgets must be finite"):
        report.build_report(quick_fit, compute=[1e22, -1])
    with pytest.raises(bs.BayescaleError, match="does not exist"):
        report.write_report(quick_fit, tmp_path / "missing" / "r.html")


def test_cli_report(quick_fit_path, tmp_path, capsys):
    out = tmp_path / "report.html"
    assert main(["report", str(quick_fit_path), "--out", str(out), "--compute", "1e23"]) == 0
    assert "wrote report" in capsys.readouterr().out
    text = out.read_text()
    assert (
        '<td class="l">1e23</td>' in text and len(IMAGE.findall(text)) == 9
    )  # 7 figures, ELPD, the laws' plans
    assert main(["report", str(quick_fit_path), "--out", str(tmp_path / "no" / "r.html")]) == 2
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main(["report", str(quick_fit_path), "--out", str(out), "--train-below", "0"])
    assert exit_.value.code == 2
    assert (
        "error: bayescale report: argument --train-below: must be a finite number > 0"
        in capsys.readouterr().err
    )


@pytest.mark.parametrize(
    "kind", ["isoflop", "pair", "loss-params", "ppc", "prior-predictive", "loss-frontier"]
)
def test_cli_plot_kinds(quick_fit_path, tmp_path, kind):
    out = tmp_path / f"{kind}.png"
    assert main(["plot", str(quick_fit_path), kind, "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_plot_kinds_are_the_drawn_kinds():
    assert set(PLOTS) == set(kinds.KINDS)


def test_cli_plot_kind_the_law_cannot_draw(quick_fit_path, tmp_path, capsys):
    assert set(PLOTS) >= {"frontier", "allocation", "isoflop", "residuals", "epochs"}
    assert main(["plot", str(quick_fit_path), "epochs", "--out", str(tmp_path / "e.png")]) == 2
    assert "does not model repeated data" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["pair", "--compute", "1e22"],
         "error: --compute does not apply to the 'pair' figure; it applies to isoflop"),
        (["loss", "--unique-tokens", "1e9"],
         "error: --unique-tokens does not apply to the 'loss' figure; it applies to epochs"),
        (["loss", "--x-range", "1e22", "1e20"],
         "error: the x range (--x-range) must be two finite numbers 0 < low < high"),
        (["loss", "--x-range", "1e20"], "error: bayescale plot: argument --x-range: expected 2 arguments"),
        (["isoflop", "--compute", "0"], "error: bayescale plot: argument --compute: must be a finite number"),
        (["isoflop-fit"],
         "error: the 'isoflop-fit' figure needs an IsoFLOP fit (bayescale isoflop); this is a parametric"),
    ],
)  # fmt: skip
def test_cli_plot_refuses_options_the_kind_does_not_take(quick_fit_path, tmp_path, capsys, argv, message):
    kind, *options = argv
    try:  # argparse's own errors exit, the figure's return
        code = main(["plot", str(quick_fit_path), kind, "--out", str(tmp_path / "x.png"), *options])
    except SystemExit as exit_:
        code = exit_.code
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "x.png").exists()
