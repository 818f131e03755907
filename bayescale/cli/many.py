"""``bayescale fit-many``: many fits from a JSON list of jobs, locally or on Dask."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from bayescale.cli.exits import EXIT_USER_ERROR
from bayescale.cli.files import _refuse_input_as_output, _save_or_keep
from bayescale.cli.options import SAMPLER_SETTINGS, Subcommands, _positive_int
from bayescale.cli.render import _emit
from bayescale.data.config import parse_config
from bayescale.errors import BayescaleError, has_format_or_control


def add_fit_many(sub: Subcommands) -> None:
    """Add ``bayescale fit-many`` to the subcommands ``sub``."""
    p = sub.add_parser("fit-many", help="run many fits from a JSON list of jobs, locally or on Dask")
    p.add_argument("jobs", type=Path, help="JSON list of jobs: fit() keywords plus a 'name' each")
    p.add_argument("--out-dir", required=True, type=Path, help="folder for the fits (NAME.nc)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS", help="Dask scheduler address")
    p.add_argument(
        "--workers", type=_positive_int, default=None, help="local worker processes (default: CPUs)"
    )
    p.add_argument("--json", action="store_true")


def cmd_fit_many(args: argparse.Namespace) -> int:
    """``bayescale fit-many``: run every job, save each fit, print one line per job."""
    from _bayescale_cluster import reveal_cluster_modules
    from bayescale.methods.io import check_writable
    from bayescale.methods.many import dask_executor, fit_many

    if not args.jobs.is_file():
        raise BayescaleError(f"jobs file {str(args.jobs)!r} does not exist")
    if not args.out_dir.is_dir():
        raise BayescaleError(f"output folder {str(args.out_dir)!r} does not exist")
    try:
        jobs = parse_config(args.jobs.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:  # a ValueError too: first
        raise BayescaleError(
            f"jobs file {str(args.jobs)!r} is not UTF-8 text: {exc.reason} at byte {exc.start}"
        ) from None
    except ValueError as exc:
        raise BayescaleError(f"jobs file {str(args.jobs)!r} is not valid JSON: {exc}") from None
    if not isinstance(jobs, list) or not all(isinstance(j, dict) for j in jobs):
        raise BayescaleError("the jobs file must hold a JSON list of objects (fit() keywords)")
    names = [str(job.pop("name", f"job{i}")) for i, job in enumerate(jobs)]
    if len(set(names)) != len(names):
        raise BayescaleError("job names must be unique: each names its output file")
    outputs = [_job_output(args.out_dir, name, i) for i, name in enumerate(names)]
    for i, (job, out) in enumerate(zip(jobs, outputs, strict=True)):
        if isinstance(job.get("runs"), str):
            _refuse_input_as_output(out, [job["runs"]])
        check_writable(out, f"job {i} ({names[i]!r})")
    for name, job in zip(names, jobs, strict=True):
        # A job speaks the command line's words: "seed", and "draws", "chains", ... as the flags
        # do; they become fit()'s random_seed and sampler settings.
        if "seed" in job:
            job["random_seed"] = job.pop("seed")
        _job_columns(name, job)
        flat = {name: job.pop(name) for name in SAMPLER_SETTINGS if name in job}
        if flat:
            if not isinstance(job.get("sampler") or {}, dict):
                raise BayescaleError(f"job {name!r}: 'sampler' must be an object of settings")
            job["sampler"] = {**(job.get("sampler") or {}), **flat}
        job.setdefault("warn", False)
    executor = None
    if args.scheduler:
        reveal_cluster_modules()  # hidden by the ``bayescale`` command, to start faster
        executor = dask_executor(args.scheduler)
    results = fit_many(jobs, executor=executor, max_workers=args.workers)
    rows = []
    for name, out, result in zip(names, outputs, results, strict=True):
        row: dict[str, Any] = {"name": name, "ok": result.ok, "error": result.error}
        if result.ok:
            try:  # one job that cannot be saved must not stop the saving of the others
                row["saved_to"] = str(_save_or_keep(result.fit, out))
            except BayescaleError as exc:
                row.update(ok=False, error=str(exc))
            row["diagnostics_ok"] = result.fit.diagnostics["ok"]
        rows.append(row)
    lines = [
        f"{r['name']:<20} " + (f"saved to {r['saved_to']}" if r["ok"] else f"FAILED: {r['error']}")
        for r in rows
    ]
    _emit(args, rows, "\n".join(lines))
    failed = sum(not r["ok"] for r in rows)
    if failed:
        print(f"error: {failed} of {len(rows)} jobs failed", file=sys.stderr)
        return EXIT_USER_ERROR
    return 0


def _job_output(out_dir: Path, name: str, index: int) -> Path:
    """``out_dir/NAME.nc``, refusing a job name that is not a plain file name.

    A shared jobs file must not write outside ``--out-dir``: no ``..``, no absolute
    path, no folder separator, no NUL or other control character.
    """
    bad = None
    if not name or name in (".", ".."):
        bad = "is empty or a folder reference"
    elif any(sep in name for sep in ("/", "\\", os.sep)) or (os.altsep and os.altsep in name):
        bad = "contains a folder separator"
    elif has_format_or_control(name):
        bad = "contains a control character or a Unicode format character (such as U+202E)"
    elif name.startswith("."):
        bad = "starts with '.' (hidden file)"
    elif len(f"{name}.nc".encode()) > 255:
        bad = "is too long for a file name"
    if bad:
        raise BayescaleError(
            f"job {index} has name {name!r}, which {bad}; a name must be a plain file name "
            f"(the fit is saved as NAME.nc in --out-dir)"
        )
    out = out_dir / f"{name}.nc"
    if out.resolve().parent != out_dir.resolve():
        raise BayescaleError(f"job {index} has name {name!r}, which would be saved outside --out-dir")
    return out


def _job_columns(name: str, job: dict[str, Any]) -> None:
    """A job's column mapping in the command line's words, as ``fit(columns=...)`` takes it.

    ``"column": ["loss=loss_c4_en", ...]`` as ``--column`` does; ``"columns"`` a mapping, or the
    path of a JSON/TOML mapping file as ``--columns`` takes; the two merge, ``column`` last.
    """
    from bayescale.data.columns import parse_column_items, read_column_file

    columns = job.get("columns")
    if isinstance(columns, str):
        columns = read_column_file(columns)
    elif columns is not None and not isinstance(columns, dict):
        raise BayescaleError(f"job {name!r}: 'columns' must map names to source columns, or name a file")
    items = job.pop("column", None)
    if items is not None:
        if isinstance(items, str):
            items = [items]
        if not isinstance(items, list):
            raise BayescaleError(f"job {name!r}: 'column' must be a list of NAME=SOURCE, e.g. [\"loss=val\"]")
        columns = {**(columns or {}), **parse_column_items(items)}
    if columns is not None:
        job["columns"] = columns
