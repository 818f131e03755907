"""``bayescale predict``: loss at new (params, tokens)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from bayescale.cli.files import _load
from bayescale.cli.options import (
    Subcommands,
    _group_option,
    _positive_float,
    _probability,
    _seed,
    _single_law_option,
)
from bayescale.cli.render import _distance_payload, _emit, _intervals_text, _warn_beyond
from bayescale.errors import BayescaleError


def add_predict(sub: Subcommands) -> None:
    """Add ``bayescale predict`` to the subcommands ``sub``."""
    p = sub.add_parser("predict", help="loss at new (params, tokens)")
    p.add_argument("--strict", action="store_true", help="exit non-zero when the fit failed its diagnostics")
    p.add_argument("fit", type=Path)
    p.add_argument("--params", type=_positive_float, help="model parameters N")
    p.add_argument("--tokens", type=_positive_float, help="training tokens D")
    p.add_argument("--queries", type=Path, help="CSV with columns params, tokens (one prediction per row)")
    p.add_argument("--prob", type=_probability, default=0.9)
    p.add_argument("--seed", type=_seed, default=None)
    _group_option(p)
    _single_law_option(p)
    p.add_argument("--json", action="store_true")


def cmd_predict(args: argparse.Namespace) -> int:
    """``bayescale predict``: loss at one (N, D) or at every row of a CSV."""
    from bayescale.data.runs import read_table
    from bayescale.data.schema import canonical_columns
    from bayescale.posterior.intervals import row_to_intervals

    fit = _load(args.fit, args)
    if args.queries is not None:
        if args.params is not None or args.tokens is not None:
            raise BayescaleError("give either --queries or --params/--tokens, not both")
        if not args.queries.is_file():
            raise BayescaleError(f"queries file {str(args.queries)!r} does not exist")
        frame = read_table(args.queries)
        frame = frame.rename(columns=canonical_columns(frame.columns))
        missing = [c for c in ("params", "tokens") if c not in frame.columns]
        if missing:
            raise BayescaleError(f"queries file needs column(s) {missing}; found {list(frame.columns)}")
        if frame.empty:
            raise BayescaleError(f"queries file {str(args.queries)!r} has a header but no rows")
        for column in ("params", "tokens"):
            frame[column] = _query_column(frame[column], column)
        table = fit.predict(
            frame["params"],
            frame["tokens"],
            prob=args.prob,
            random_seed=args.seed,
            average_beyond=not args.single_law,
            group=args.group,
        )
        _warn_beyond(table)
        if args.json:
            print(table.to_json(orient="records", indent=2))
        else:
            print(table.to_string(index=False, float_format=lambda v: f"{v:.5g}"))
        return 0
    if args.params is None or args.tokens is None:
        raise BayescaleError("give --params and --tokens (or --queries FILE)")
    table = fit.predict(
        args.params,
        args.tokens,
        prob=args.prob,
        random_seed=args.seed,
        average_beyond=not args.single_law,
        group=args.group,
    )
    _warn_beyond(table)
    row = table.iloc[0]
    intervals = row_to_intervals(row, ["loss", "loss_predictive"])
    payload = {"params": args.params, "tokens": args.tokens, "prob": args.prob, **intervals}
    payload["distance"] = _distance_payload(row)
    title = f"loss at N = {args.params:.3g}, D = {args.tokens:.3g} ({args.prob:.0%} intervals)"
    _emit(args, payload, _intervals_text(title, intervals))
    return 0


def _query_column(series: Any, column: str) -> Any:
    """The column as positive finite floats, or an error naming the first bad row."""
    import pandas as pd

    values = pd.to_numeric(series, errors="coerce").astype(float)
    bad = ~(values.notna() & (values > 0) & (values < float("inf")))
    if bad.any():
        row = int(bad.to_numpy().nonzero()[0][0])
        raise BayescaleError(
            f"queries file column {column!r} row {row}: {series.iloc[row]!r} is not a finite number > 0 "
            f"({int(bad.sum())} such row(s))"
        )
    return values
