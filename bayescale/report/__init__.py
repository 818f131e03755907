"""Self-contained HTML reports, to attach to a design review.

Everything is in one file: figures are embedded as base64 PNG, there is no
script, stylesheet or image fetched from the network. The pages are laid out by the
Jinja2 templates of ``bayescale/templates`` with autoescape on: these modules
compute plain values, the templates escape every one of them.

:mod:`.fit` is a fit's report (:func:`write_report`), :mod:`.downstream` a downstream
model's (:func:`write_downstream_report`), :mod:`.page` what both pages share (style,
numbers, the template engine, writing without replacing data).
"""

from bayescale.report.downstream import (
    DOWNSTREAM_TEMPLATE,
    build_downstream_report,
    write_downstream_report,
)
from bayescale.report.fit import TEMPLATE, build_report, default_budgets, figures, write_report
from bayescale.report.page import (
    PAGE_WIDTH,
    Interval,
    number,
    refuse_to_replace_data,
    write_atomically,
)

__all__ = [
    "DOWNSTREAM_TEMPLATE",
    "PAGE_WIDTH",
    "TEMPLATE",
    "Interval",
    "build_downstream_report",
    "build_report",
    "default_budgets",
    "figures",
    "number",
    "refuse_to_replace_data",
    "write_atomically",
    "write_downstream_report",
    "write_report",
]
