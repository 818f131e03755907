"""``bayescale report``: the self-contained HTML report of a saved fit."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from bayescale.cli.files import _load, refuse_foreign_output
from bayescale.cli.options import Subcommands, _positive_float, _probability
from bayescale.cli.plan import check_question
from bayescale.data.schema import FLOPS_PER_PARAM_TOKEN
from bayescale.errors import BayescaleError


def add_report(sub: Subcommands) -> None:
    """Add ``bayescale report`` to the subcommands ``sub``."""
    p = sub.add_parser("report", help="self-contained HTML report of a saved fit")
    p.add_argument("fit", type=Path)
    p.add_argument("--out", type=Path, required=True, help="HTML file to write")
    p.add_argument(
        "--compute",
        type=_positive_float,
        action="append",
        default=None,
        help="budget in FLOPs to plan (repeatable; default 10x-1000x the largest run)",
    )
    p.add_argument("--prob", type=_probability, default=0.9)
    p.add_argument(
        "--train-below", type=_positive_float, help="add a held-out check: refit below this compute [FLOPs]"
    )


def cmd_report(args: argparse.Namespace) -> int:
    """``bayescale report``: write the self-contained HTML report."""
    import matplotlib

    matplotlib.use("Agg")
    from bayescale.methods.io import check_writable
    from bayescale.report import refuse_to_replace_data, write_report

    if args.out.parent.exists():
        refuse_to_replace_data(args.out, "the report")
        refuse_foreign_output(args.out, "report")
        check_writable(args.out, "the report")
    fit = _load(args.fit, args, downstream=True)
    if type(fit).__name__ == "Downstream":
        return _downstream_report(args, fit)
    if args.compute:  # the budgets are asked as `plan --compute` asks them: refused alike
        import warnings

        import numpy as np

        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            check_question(fit.optimal(args.compute, prob=args.prob), FLOPS_PER_PARAM_TOKEN)
    path = write_report(fit, args.out, compute=args.compute, prob=args.prob, train_below=args.train_below)
    print(f"wrote report to {path}")
    return 0


def _downstream_report(args: argparse.Namespace, model: Any) -> int:
    """The report of a saved downstream fit: both steps, the links and their evidence, the figure."""
    from bayescale.report import write_downstream_report

    given = [name for name in ("compute", "train_below") if getattr(args, name)]
    if given:
        options = " and ".join("--" + name.replace("_", "-") for name in given)
        raise BayescaleError(
            f"{options} ask a loss fit's questions; a downstream fit's report takes --prob only "
            "(forecasts at other sizes: bayescale downstream ... --report, or Python)"
        )
    path = write_downstream_report(model, args.out, prob=args.prob)
    print(f"wrote report to {path}")
    return 0
