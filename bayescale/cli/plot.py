"""``bayescale plot``: a standard figure of a saved fit."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from bayescale.cli.files import _load
from bayescale.cli.options import Subcommands
from bayescale.errors import BayescaleError

#: Figure kinds of ``bayescale plot`` and the function drawing each.
PLOTS = {
    "frontier": "plot_frontier",
    "allocation": "plot_allocation",
    "loss": "plot_loss",
    "loss-params": "plot_loss",
    "loss-tokens": "plot_loss",
    "isoflop": "plot_isoflop",
    "pair": "plot_pair",
    "prior-posterior": "plot_prior_posterior",
    "residuals": "plot_residuals",
    "ppc": "plot_ppc",
    "epochs": "plot_epochs",
    "repeated-value": "plot_repeated_value",
}


#: Keyword arguments of the kinds that share a function.
PLOT_OPTIONS: dict[str, dict[str, Any]] = {"loss-params": {"x": "params"}, "loss-tokens": {"x": "tokens"}}


def add_plot(sub: Subcommands) -> None:
    """Add ``bayescale plot`` to the subcommands ``sub``."""
    p = sub.add_parser("plot", help="draw a standard figure of a saved fit")
    p.add_argument("fit", type=Path)
    p.add_argument("kind", choices=sorted(PLOTS), help="which figure")
    p.add_argument("--out", type=Path, required=True, help="image file to write (.png, .pdf, .svg)")


def cmd_plot(args: argparse.Namespace) -> int:
    """``bayescale plot``: write one standard figure."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from bayescale import plots
    from bayescale.methods.io import check_writable
    from bayescale.report import refuse_to_replace_data, write_atomically

    formats = Figure().canvas.get_supported_filetypes()
    suffix = args.out.suffix.lower().lstrip(".")
    if suffix not in formats:
        raise BayescaleError(
            f"cannot write a figure as {str(args.out)!r}: unknown image type {suffix!r}; "
            f"use one of {', '.join('.' + f for f in sorted(formats))}"
        )
    if not args.out.parent.exists():
        raise BayescaleError(f"folder {str(args.out.parent)!r} does not exist")
    refuse_to_replace_data(args.out, "the figure")
    check_writable(args.out, "the figure")
    fit = _load(args.fit, args)
    drawn = getattr(plots, PLOTS[args.kind])(fit, **PLOT_OPTIONS.get(args.kind, {}))
    figure = drawn if hasattr(drawn, "savefig") else drawn.figure  # multi-panel kinds return a Figure
    import io

    buffer = io.BytesIO()
    figure.savefig(buffer, format=suffix, dpi=120)
    write_atomically(args.out, buffer.getvalue())
    print(f"wrote {args.kind} figure to {args.out}")
    return 0
