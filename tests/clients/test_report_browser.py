"""The HTML report as a person sees it: laid out by headless Chromium at 1280 px.

A script added to a copy of the report measures every table and image after the page
has loaded and writes the measurements into the DOM, which Chromium prints
(``--dump-dom``). Needs Debian's ``chromium`` (``make browser`` installs it); skipped
without it. Slow: the report fits the variant law and draws every figure.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import pytest

from bayescale import report

CHROMIUM = Path(os.environ.get("BAYESCALE_CHROMIUM", "/usr/bin/chromium"))

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not CHROMIUM.is_file(),
        reason=f"headless Chromium not found at {CHROMIUM}: `make browser` installs Debian's chromium",
    ),
]

#: Flags for a headless browser on a closed network: no background connections, a fresh profile.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)

#: Measures the laid-out page once everything (the embedded images too) has loaded.
MEASURE = """
<script>
window.addEventListener("load", () => {
  const box = (el) => {
    const r = el.getBoundingClientRect();
    return {left: r.left, right: r.right, width: r.width};
  };
  const text = (el) => el.textContent.trim();
  const body = document.body.getBoundingClientRect();
  const style = getComputedStyle(document.body);
  const out = {
    page: document.documentElement.clientWidth,
    column: {
      left: body.left + parseFloat(style.paddingLeft),
      right: body.right - parseFloat(style.paddingRight),
    },
    scroll_width: document.documentElement.scrollWidth,
    headings: [...document.querySelectorAll("h2")].map(text),
    tables: [...document.querySelectorAll("table")].map((t) => ({
      ...box(t),
      header_rows: [...t.querySelectorAll("thead tr")].map((tr) => [...tr.cells].map(text)),
      rows: [...t.querySelectorAll("tbody tr")].map((tr) => [...tr.cells].map(text)),
      cells_wider: [...t.querySelectorAll("td, th")].filter((c) => c.scrollWidth > c.clientWidth + 1).length,
    })),
    images: [...document.querySelectorAll("img")].map((i) => ({...box(i), natural: i.naturalWidth})),
    captions: [...document.querySelectorAll("figcaption")].map(text),
  };
  const pre = document.createElement("pre");
  pre.id = "layout";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>
"""


def layout(html_path: Path, tmp_path: Path, width: int = report.PAGE_WIDTH) -> dict:
    """Open a copy of the report with the measuring script in headless Chromium; the measurements."""
    page = tmp_path / "measured.html"
    page.write_text(html_path.read_text().replace("</body>", MEASURE + "</body>"))
    profile = tmp_path / "profile"
    profile.mkdir()
    done = subprocess.run(
        [str(CHROMIUM), *FLAGS, f"--user-data-dir={profile}", f"--window-size={width},900",
         "--virtual-time-budget=20000", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    shutil.rmtree(profile, ignore_errors=True)
    found = re.search(r'<pre id="layout">(.*?)</pre>', done.stdout, re.DOTALL)
    assert found, f"Chromium printed no measurements (exit {done.returncode}): {done.stderr[-2000:]}"
    import html

    return json.loads(html.unescape(found.group(1)))


@pytest.fixture(scope="module")
def measured(quick_fit, tmp_path_factory) -> dict:
    folder = tmp_path_factory.mktemp("browser")
    path = report.write_report(quick_fit, folder / "report.html", compute=[1e21, 1e22, 1e23, 1e24, 1e25])
    return layout(path, folder)


def test_no_table_or_figure_is_wider_than_the_page(measured):
    page, column = measured["page"], measured["column"]
    assert page == report.PAGE_WIDTH  # no scroll bar took a share: the page is as wide as the window
    assert measured["scroll_width"] <= page, "the page scrolls sideways"
    assert 0 < column["left"] < column["right"] <= page
    assert len(measured["tables"]) >= 5
    for table in measured["tables"]:  # within the text column, not only the window
        assert column["left"] - 0.5 <= table["left"] and table["right"] <= column["right"] + 0.5, table
        assert table["cells_wider"] == 0, f"a cell's text overflows it: {table['header_rows']}"
    assert len(measured["images"]) >= 8
    for image in measured["images"]:
        assert image["natural"] > 0, "an embedded figure did not decode"
        assert image["right"] <= column["right"] + 0.5 and image["width"] > 300


def test_tables_have_one_header_row_and_no_blank_rows(measured):
    for table in measured["tables"]:
        assert len(table["header_rows"]) == 1, table["header_rows"]
        assert all(table["header_rows"][0]), f"a blank header cell: {table['header_rows']}"
        assert table["rows"] and all(any(row) for row in table["rows"])


def test_parameter_table_prints_ess_as_a_count_and_the_sections_a_reader_expects(measured):
    params = next(t for t in measured["tables"] if t["header_rows"][0][0] == "parameter")
    column = params["header_rows"][0].index("bulk ESS")
    assert all(re.fullmatch(r"\d+", row[column]) for row in params["rows"]), params["rows"]
    r_hat = params["header_rows"][0].index("r_hat")
    assert all(re.fullmatch(r"\d\.\d{3}", row[r_hat]) for row in params["rows"])
    assert {"Plan", "Law comparison", "Extrapolation", "Figures"} <= set(measured["headings"])
    assert any("E, alpha_N, alpha_D" in c for c in measured["captions"])
    plan = next(t for t in measured["tables"] if t["header_rows"][0][0] == "compute [FLOPs]")
    assert [row[0] for row in plan["rows"]] == ["1e21", "1e22", "1e23", "1e24", "1e25"]


def test_the_old_report_layout_fails_this_check(quick_fit, tmp_path):
    """The check can fail: the plan as pandas printed it (21 columns, index-name row) is too wide."""
    table = quick_fit.optimal([1e22, 1e23])
    table.index.name = "compute [FLOPs]"
    head = f"<!DOCTYPE html><html><head><style>{report.page.STYLE}</style></head>"
    old = f"{head}<body>{table.to_html()}</body></html>"
    path = tmp_path / "old.html"
    path.write_text(old)
    (tmp_path / "m").mkdir()
    measured = layout(path, tmp_path / "m")
    (table_box,) = measured["tables"]
    assert table_box["right"] > measured["page"] or measured["scroll_width"] > measured["page"]
    assert len(table_box["header_rows"]) == 2 and not any(table_box["header_rows"][1][1:])
