"""The HTML report: self-contained, with the tables and every figure; and the CLI that writes it."""

import html
import re

import matplotlib

matplotlib.use("Agg")

import pytest
from conftest import MUENNIGHOFF_C4, hand_built_fit

from bayescale import report
from bayescale.cli import PLOTS, main

IMAGE = re.compile(r'<img [^>]*src="data:image/png;base64,[A-Za-z0-9+/=]{1000,}"')
REMOTE = re.compile(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", re.IGNORECASE)


def test_report_is_self_contained_with_tables_and_figures(quick_fit):
    text = report.build_report(quick_fit, compute=[1e22, 1e23])
    assert not REMOTE.search(text) and "<script" not in text
    assert len(IMAGE.findall(text)) == len(report.figures(quick_fit)) == 7
    summary = quick_fit.summary()
    for name in summary.index:  # parameter table, with the posterior median of each parameter
        assert f"<th>{name}</th>" in text
        assert f"{summary.loc[name, 'median']:.4g}" in text
    assert "<th>1e+22</th>" in text and "<th>1e+23</th>" in text  # plan rows, one per budget
    assert f"{len(quick_fit.runs)} runs" in text
    assert ("passed" if quick_fit.diagnostics["ok"] else "FAILED") in text
    assert all(
        html.escape(p) in text for p in quick_fit.diagnostics["problems"]
    )  # each failed check is listed


def test_report_of_a_law_without_closed_form_plan(tmp_path):
    fit = hand_built_fit("data-constrained", "datablations", MUENNIGHOFF_C4)
    path = report.write_report(fit, tmp_path / "dc.html")
    text = path.read_text()
    assert "no closed-form compute-optimal allocation" in text
    captions = [c for c, _ in report.figures(fit)]
    assert any("epochs" in c for c in captions) and not any("IsoFLOP" in c for c in captions)
    assert len(IMAGE.findall(text)) == len(captions)


def test_report_rejects_bad_budgets(quick_fit, tmp_path):
    with pytest.raises(report.BayescaleError, match="budgets must be finite"):
        report.build_report(quick_fit, compute=[1e22, -1])
    with pytest.raises(report.BayescaleError, match="does not exist"):
        report.write_report(quick_fit, tmp_path / "missing" / "r.html")


def test_cli_report(quick_fit_path, tmp_path, capsys):
    out = tmp_path / "report.html"
    assert main(["report", str(quick_fit_path), "--out", str(out), "--compute", "1e23"]) == 0
    assert "wrote report" in capsys.readouterr().out
    text = out.read_text()
    assert "<th>1e+23</th>" in text and len(IMAGE.findall(text)) == 7
    assert main(["report", str(quick_fit_path), "--out", str(tmp_path / "no" / "r.html")]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["isoflop", "pair", "loss-params", "ppc"])
def test_cli_plot_kinds(quick_fit_path, tmp_path, kind):
    out = tmp_path / f"{kind}.png"
    assert main(["plot", str(quick_fit_path), kind, "--out", str(out)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_plot_kind_the_law_cannot_draw(quick_fit_path, tmp_path, capsys):
    assert set(PLOTS) >= {"frontier", "allocation", "isoflop", "residuals", "epochs"}
    assert main(["plot", str(quick_fit_path), "epochs", "--out", str(tmp_path / "e.png")]) == 2
    assert "does not model repeated data" in capsys.readouterr().err
