"""The files of the ``bayescale`` command: runs read with the loader options, saved fits, outputs."""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bayescale.cli.exits import _one_line
from bayescale.errors import BayescaleError, printable
from bayescale.inference.diagnostics import FitWarning

#: What a saved fit of each kind is, in an error message.
METHOD_NAMES = {
    "fit": "a parametric fit",
    "isoflop": "an IsoFLOP fit (bayescale isoflop)",
    "envelope": "a training-curve envelope fit (bayescale envelope)",
    "steps": "a Kaplan L(N, S) fit (bayescale steps)",
    "curves": "a multi-power law fit of loss curves (bayescale curves)",
    "downstream": "a downstream fit (bayescale downstream --save)",
}


def _loader_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The loader options given (``--column``, ``--columns``, ``--where``, ...) as ``from_any`` keywords."""
    from bayescale.data.columns import parse_column_items, read_column_file

    columns = read_column_file(args.columns_file) if args.columns_file is not None else {}
    columns.update(parse_column_items(args.column_map))
    options = {
        "columns": columns or None,
        "where": args.where or None,
        "best_of": args.best_of,
        "flops_per_param_token": args.loader_k,
    }
    return {k: v for k, v in options.items() if v is not None}


def _load_runs(args: argparse.Namespace, source: Any, curves: bool = False) -> Any:
    """The runs (``curves``: the loss curves) of ``source`` read with the loader options.

    Prints what the options did.
    """
    from bayescale.data.curves import Curves
    from bayescale.data.runs import Runs

    table = (Curves if curves else Runs).from_any(source, **_loader_kwargs(args))
    for note in table.notes:
        print(f"note: {printable(note)}", file=sys.stderr)
    return table


def _resolve_flops(fit: Any, args: argparse.Namespace | None) -> None:
    """Replace ``--flops-per-param-token estimate`` with the median compute / (N D) of the fit's runs."""
    if args is None or getattr(args, "flops_per_param_token", None) != "estimate":
        return
    from bayescale.data.columns import estimate_flops_per_param_token

    args.flops_per_param_token = estimate_flops_per_param_token(fit.runs)
    print(
        f"note: FLOP convention estimated from the runs: k = compute / (N D) = "
        f"{args.flops_per_param_token:.4g} (median)",
        file=sys.stderr,
    )


def _refuse_input_as_output(out: Path, inputs: Sequence[Any]) -> None:
    """Raise when ``out`` is one of the input files (writing it would destroy the input)."""
    if not out.exists():
        return
    for source in inputs:
        if source is None or not isinstance(source, (str, Path)) or not Path(source).is_file():
            continue
        if os.path.samefile(out, source):
            raise BayescaleError(f"--out {str(out)!r} is an input file; it would be replaced; choose another")


#: What marks a file the command may replace: a report of this tool, or a figure matplotlib drew
#: (PNG, SVG and EPS say so in their head, PDF in its trailing Info dictionary).
_OWN_OUTPUT_MARKS = {"report": (b"<html", b"bayescale"), "figure": (b"matplotlib",)}


def refuse_foreign_output(path: Path, kind: str) -> None:
    """Raise unless ``path`` is absent, empty, or an earlier output of ``kind`` (``report``, ``figure``).

    ``report --out runs.csv`` would replace the runs with HTML: only a file this tool (for a
    figure, matplotlib) wrote is replaced, judged from its first and last 4 KiB.
    """
    try:
        size = path.stat().st_size
    except OSError:
        return  # absent (or unreadable: check_writable says why)
    if not path.is_file() or size == 0:
        return
    try:
        with open(path, "rb") as handle:
            edges = handle.read(4096)
            if size > 4096:
                handle.seek(max(4096, size - 4096))
                edges += handle.read()
    except OSError:
        return
    edges = edges.lower()
    if all(mark in edges for mark in _OWN_OUTPUT_MARKS[kind]):
        return
    what = "a bayescale report" if kind == "report" else "a figure drawn by matplotlib"
    raise BayescaleError(
        f"refusing to write the {kind} over {str(path)!r}: the file exists and is not {what}; "
        "choose another --out (or remove the file)"
    )


def _save_or_keep(result: Any, out: Path, **save_options: Any) -> Path:
    """Save the fit to ``out``; if that fails, keep it in the temporary folder and say where.

    A finished fit is never lost to a write error: the error names the copy.
    """
    import tempfile

    try:
        return result.save(out, **save_options)
    except (OSError, BayescaleError) as exc:
        reason = _one_line(exc)
    name = None
    try:
        fd, name = tempfile.mkstemp(prefix=f"bayescale-{out.stem}-", suffix=".nc")
        os.close(fd)
        kept = result.save(name, **save_options)
    except (OSError, BayescaleError) as exc:
        if name is not None:
            Path(name).unlink(missing_ok=True)
        raise BayescaleError(
            f"cannot save the fit to {str(out)!r}: {reason}; keeping a copy failed too: {_one_line(exc)}"
        ) from None
    raise BayescaleError(
        f"cannot save the fit to {str(out)!r}: {reason}; the fit is kept at {str(kept)!r} "
        "(move it from there)"
    )


def _load(
    path: Path, args: argparse.Namespace | None = None, methods: bool = False, downstream: bool = False
) -> Any:
    """Load a saved fit, printing a warning (and noting it for --strict) if it failed diagnostics.

    With ``methods``, an IsoFLOP, envelope or L(N, S) fit is accepted too; with ``downstream``, a
    downstream fit; else only a parametric fit (the other commands' questions need a law).
    """
    from bayescale.methods.io import kind_of, load_fit

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FitWarning)
        fit = load_fit(path)
    kind = kind_of(fit)
    if kind == "curves" and (args is None or args.command != "summary"):
        raise BayescaleError(
            f"{str(path)!r} holds {METHOD_NAMES[kind]}; it answers `bayescale summary`, and in Python "
            "bayescale.load_fit(path).predict(schedule, steps)"
        )
    if kind == "downstream" and not downstream:
        command = f"`bayescale {args.command}`" if args is not None else "this command"
        raise BayescaleError(
            f"{str(path)!r} holds {METHOD_NAMES[kind]}; {command} does not read one: a saved downstream "
            "fit answers `bayescale report FILE --out PAGE`, or Python (bs.load_fit(FILE).predict(N, D))"
        )
    if kind not in ("fit", "downstream") and not methods:
        command = f"`bayescale {args.command}`" if args is not None else "this command"
        raise BayescaleError(
            f"{str(path)!r} holds {METHOD_NAMES[kind]}; {command} needs a parametric fit "
            "(bayescale fit RUNS --out FILE); a saved method fit answers `summary` and `plan --compute`"
        )
    if kind == "fit":
        _resolve_flops(fit, args)
    if not fit.diagnostics["ok"]:
        print(
            "warning: this fit failed its diagnostics: " + printable("; ".join(fit.diagnostics["problems"])),
            file=sys.stderr,
        )
        if args is not None:
            args.failed_diagnostics = True  # main() exits non-zero under --strict
    return fit


def _check_out(args: argparse.Namespace, source: Any) -> None:
    """Before a method's fit: refuse an --out that is the input or cannot be written."""
    from bayescale.methods.io import check_writable

    if args.out is not None:
        _refuse_input_as_output(args.out, [source, getattr(args, "priors", None)])
        check_writable(args.out)


def _method_priors(args: argparse.Namespace) -> dict[str, Any] | None:
    """The priors of a method's ``--priors`` file (PriorError for a bad one), ``None`` without it."""
    from bayescale.model.priors import read_priors_file

    return None if args.priors is None else read_priors_file(args.priors)
