"""``bayescale plot``: a standard figure of a saved fit."""

from __future__ import annotations

import argparse
from pathlib import Path

from bayescale.cli.files import _load, refuse_foreign_output
from bayescale.cli.options import Subcommands, _positive_float
from bayescale.errors import BayescaleError

#: Figure kinds of ``bayescale plot`` (drawn by ``bayescale.plots.kinds``, not imported here: slow).
PLOTS = (
    "allocation", "epochs", "extrapolation", "frontier", "isoflop", "isoflop-fit", "loss", "loss-frontier",
    "loss-params", "loss-tokens", "pair", "ppc", "prior-posterior", "prior-predictive", "repeated-value",
    "residuals",
)  # fmt: skip

#: The metadata that marks a Pillow-written figure as matplotlib's (see files.refuse_foreign_output).
_PIL_MARKS: dict[str, dict[str, object]] = {
    "jpg": {"comment": b"Matplotlib"},
    "jpeg": {"comment": b"Matplotlib"},
    "tif": {"description": "Matplotlib"},
    "tiff": {"description": "Matplotlib"},
    "webp": {"xmp": b"Matplotlib"},
}


def add_plot(sub: Subcommands) -> None:
    """Add ``bayescale plot`` to the subcommands ``sub``."""
    p = sub.add_parser("plot", help="draw a standard figure of a saved fit")
    p.add_argument("fit", type=Path)
    p.add_argument("kind", choices=PLOTS, help="which figure")
    p.add_argument("--out", type=Path, required=True, help="image file to write (.png, .pdf, .svg)")
    p.add_argument("--compute", type=_positive_float, action="append", help="budget [FLOPs] (isoflop)")
    p.add_argument(
        "--params", type=_positive_float, action="append", help="model size N, one curve each (loss, epochs)"
    )
    p.add_argument("--unique-tokens", type=_positive_float, help="unique tokens U repeated (epochs)")
    p.add_argument(
        "--x-range", type=_positive_float, nargs=2, metavar=("LO", "HI"), help="x axis from LO to HI"
    )
    p.add_argument("--train-below", type=_positive_float, help="refit below this compute (extrapolation)")


def cmd_plot(args: argparse.Namespace) -> int:
    """``bayescale plot``: write one standard figure."""
    check_figure_path(args.out)
    from bayescale.plots import kinds

    fit = _load(args.fit, args, methods=True)  # kinds.draw says which figures a method fit has
    keys = ("compute", "params", "unique_tokens", "x_range", "train_below")
    drawn = kinds.draw(args.kind, fit, kinds.PlotOptions(**{k: getattr(args, k) for k in keys}))
    write_figure(drawn, args.out)
    print(f"wrote {args.kind} figure to {args.out}")
    return 0


def check_figure_path(out: Path) -> None:
    """Raise unless ``out`` can take a figure: a known image type, an existing folder, not a data file."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    from bayescale.methods.io import check_writable
    from bayescale.report import refuse_to_replace_data

    formats = Figure().canvas.get_supported_filetypes()
    suffix = out.suffix.lower().lstrip(".")
    if suffix not in formats:
        raise BayescaleError(
            f"cannot write a figure as {str(out)!r}: unknown image type {suffix!r}; "
            f"use one of {', '.join('.' + f for f in sorted(formats))}"
        )
    if not out.parent.exists():
        raise BayescaleError(f"folder {str(out.parent)!r} does not exist")
    refuse_to_replace_data(out, "the figure")
    refuse_foreign_output(out, "figure")
    check_writable(out, "the figure")


def write_figure(drawn: object, out: Path) -> None:
    """Write the Axes or Figure ``drawn`` to ``out`` (checked by :func:`check_figure_path`), atomically."""
    import io

    from bayescale.report import write_atomically

    figure = drawn if hasattr(drawn, "savefig") else drawn.figure  # type: ignore[attr-defined]
    suffix = out.suffix.lower().lstrip(".")
    buffer = io.BytesIO()
    # Pillow writes no creator unless told: marked, the next `plot` may replace the file.
    mark = _PIL_MARKS.get(suffix)
    figure.savefig(buffer, format=suffix, dpi=120, **({"pil_kwargs": mark} if mark else {}))
    write_atomically(out, buffer.getvalue())
