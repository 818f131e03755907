"""The result protocol's display: one-line repr and a compact, escaped HTML table."""

from __future__ import annotations

import numpy as np
from cheap_fits import cheap_fit
from saved_results import SCRIPT

import bayescale as bs
from bayescale.posterior.result import html_card


def test_fit_repr_is_one_short_line_and_html_a_compact_table():
    fit = cheap_fit()
    text = repr(fit)
    assert text.startswith("Fit(law='chinchilla'") and "\n" not in text and len(text) < 200
    html = fit._repr_html_()
    assert isinstance(fit, bs.Result)
    for shown in ("chinchilla", "40", "2 chains x 300 draws", "ok (0 divergences", "alpha_N", "r_hat"):
        assert shown in html, shown
    median = float(np.median(fit.posterior["alpha_N"]))
    assert f"{median:.4g}" in html
    assert len(html) < 6000


def test_fit_html_escapes_the_data_set_name_group_labels_and_problems():
    """Issue 20 item 2: text from the data or a file (here a data set name, a group label in a
    parameter name, a diagnostics problem) must come out as text, never as markup."""
    fit = cheap_fit()
    fit.runs = bs.Runs(frame=fit.runs.frame, source=SCRIPT)
    fit.diagnostics = {**fit.diagnostics, "ok": False, "problems": [SCRIPT]}
    html = fit._repr_html_()
    assert "<script" not in html.lower()
    assert html.count("&lt;script&gt;alert(1)&lt;/script&gt;") == 2
    rows = {f"E[{SCRIPT}]": {SCRIPT: SCRIPT}}
    card = html_card(SCRIPT, [(SCRIPT, SCRIPT)], rows, [SCRIPT], [SCRIPT], SCRIPT)
    assert "<script" not in card.lower()
    assert card.count("&lt;script&gt;") == 8
