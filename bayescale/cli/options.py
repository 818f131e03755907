"""Option types and option groups shared by the ``bayescale`` subcommands.

The sampler options are defined once, in :data:`SAMPLER_OPTIONS`, and added to every
command that fits with :func:`_add_sampler_options`.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bayescale.cli.exits import EXIT_USER_ERROR
from bayescale.errors import BayescaleError
from bayescale.model.likelihoods import LIKELIHOODS


def _fix_pair(text: str) -> tuple[str, float]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    try:
        return name.strip(), float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"value of {name!r} is not a number: {value!r}") from None


def _fixed_values(pairs: Sequence[tuple[str, float]]) -> dict[str, float]:
    """``--fix`` pairs as a dict, refusing a parameter given twice."""
    repeated = sorted({name for name, _ in pairs if sum(n == name for n, _ in pairs) > 1})
    if repeated:
        raise BayescaleError(f"--fix given more than once for {repeated}; give each parameter once")
    return dict(pairs)


def _fix_option(p: argparse.ArgumentParser, help: str = "hold a parameter fixed (repeatable)") -> None:
    """``--fix NAME=VALUE`` (repeatable), read by :func:`_fixed_values`."""
    p.add_argument("--fix", action="append", type=_fix_pair, default=[], metavar="NAME=VALUE", help=help)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text!r}")
    return value


#: Most seeds every backend accepts (numpy's legacy generators stop at 2**32 - 1).
MAX_SEED = 2**32 - 1


def _seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"must be an integer from 0 to {MAX_SEED}, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}")
    return value


class _Parser(argparse.ArgumentParser):
    """An argument parser whose mistakes are one ``error:`` line (exit 2), like every other error."""

    def error(self, message: str) -> Any:
        self.exit(EXIT_USER_ERROR, f"error: {self.prog}: {message} (see {self.prog} --help)\n")


def _probability(text: str) -> float:
    value = _positive_float(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"must be a probability in (0, 1), got {text!r}")
    return value


#: The subcommands of the ``bayescale`` parser; each command module adds its own.
type Subcommands = argparse._SubParsersAction[Any]

#: Sampler backends of the commands that fit; ``fit`` also takes "jax".
BACKENDS = ["auto", "numpyro", "nutpie", "pymc"]

#: The options that are settings of the sampler (``sampler=`` of every fit), by attribute name.
SAMPLER_SETTINGS = ("draws", "tune", "chains", "backend", "target_accept")

#: The sampler options, defined once: flag -> keywords of ``add_argument``.
SAMPLER_OPTIONS: dict[str, dict[str, Any]] = {
    "--seed": {"type": _seed, "default": None, "help": "random seed (default: one drawn, printed and saved)"},
    "--likelihood": {"default": "student_t", "choices": list(LIKELIHOODS)},
    "--draws": {"type": int, "default": None, "help": "draws per chain (default: the method's, 1000)"},
    "--tune": {"type": int, "default": None, "help": "tuning steps per chain (default: the method's, 1000)"},
    "--chains": {"type": int, "default": None, "help": "chains (default: the method's, 4)"},
    "--backend": {"default": None, "choices": BACKENDS, "help": "sampler backend (default: auto)"},
    "--target-accept": {
        "type": _probability,
        "default": None,
        "metavar": "P",
        "help": "NUTS's target acceptance rate in (0, 1); higher takes smaller steps "
        "(default: the method's own, e.g. 0.95, 0.99 for laws with pooled parameters)",
    },
    "--progress": {"action": "store_true", "help": "show the sampler's progress on stderr"},
}


def _add_sampler_options(
    p: argparse.ArgumentParser,
    *flags: str,
    backends: Sequence[str] | None = None,
    progress: str | None = None,
) -> None:
    """Add the sampler options ``flags`` of :data:`SAMPLER_OPTIONS` to ``p``, in that order.

    Parameters
    ----------
    p : argparse.ArgumentParser
        A subcommand's parser.
    *flags : str
        The options to add, e.g. ``"--seed", "--draws"``.
    backends : sequence of str, optional
        The choices of ``--backend`` instead of :data:`BACKENDS`.
    progress : str, optional
        The help of ``--progress`` instead of the default one.
    """
    for flag in flags:
        keywords = dict(SAMPLER_OPTIONS[flag])
        if flag == "--backend" and backends is not None:
            keywords["choices"] = list(backends)
        if flag == "--progress" and progress is not None:
            keywords["help"] = progress
        p.add_argument(flag, **keywords)


def _sampler_kwargs(args: argparse.Namespace, warn: bool = False) -> dict[str, Any]:
    """The keywords of a fit from the shared options; ``likelihood`` only where the command has it.

    ``sampler`` holds the settings given on the command line; the others are the method's
    defaults. ``warn`` is the fit's (the commands report failed diagnostics themselves).
    """
    settings = {name: getattr(args, name, None) for name in SAMPLER_SETTINGS}
    if args.seed is None:
        from bayescale.inference.sampling import resolve_seed

        # Drawn here, once, so every fit of the command uses it; the command's end prints it
        # (entry.announce_seed), so a fit that failed can be re-run as it was.
        args.seed = args.drawn_seed = resolve_seed(None)
    kwargs: dict[str, Any] = {
        "random_seed": args.seed,
        "sampler": {name: value for name, value in settings.items() if value is not None},
        "progressbar": getattr(args, "progress", False),
        "warn": warn,
    }
    if getattr(args, "likelihood", None) is not None:
        kwargs["likelihood"] = args.likelihood
    return kwargs


def _window(text: str) -> float | None:
    return None if text.strip().lower() == "none" else _positive_float(text)


def _plan_tuple(text: str) -> tuple[float, ...]:
    parts = [part.strip() for part in text.split(",")]
    if len(parts) not in (2, 3):
        raise argparse.ArgumentTypeError(f"expected N,D or N,D,U, got {text!r}")
    return tuple(_positive_float(part) for part in parts)


def _group_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--group", default=None, help="a grouped law's group to answer for (default: a typical group)"
    )


#: Help of --single-law where answers are given.
SINGLE_LAW_HELP = (
    "answer from the fitted law alone, also beyond the runs (default: blended there with a second law "
    "fitted to the same runs, more as the distance grows; docs/guides/beyond-the-runs.md)"
)


def _single_law_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--single-law", action="store_true", help=SINGLE_LAW_HELP)


def _planning_options(p: argparse.ArgumentParser) -> None:
    _single_law_option(p)
    p.add_argument(
        "--unique-tokens",
        type=_positive_float,
        nargs="+",
        action="extend",
        default=None,
        help="unique tokens available (several: every budget or target at each, repeatable)",
    )
    p.add_argument("--prob", type=_probability, default=0.9)
    p.add_argument("--kind", choices=["eti", "hdi"], default="eti", help="interval kind (default eti)")
    p.add_argument("--flops-per-param-token", type=_flops_k, default=6.0, help=FLOPS_HELP)
    p.add_argument("--json", action="store_true")


#: Help of --flops-per-param-token where a fit is planned.
FLOPS_HELP = "k in C = k N D (default 6), or 'estimate': the median of compute / (N D) of the fit's runs"


def _flops_k(text: str) -> float | str:
    if text.strip().lower() == "estimate":
        return "estimate"
    try:
        return _positive_float(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected a number > 0 or 'estimate', got {text!r}") from None


def _column_option(p: argparse.ArgumentParser, help: str) -> None:
    """``--column NAME=SOURCE`` (repeatable): which source column holds a canonical column."""
    p.add_argument(
        "--column", dest="column_map", action="append", default=[], metavar="NAME=SOURCE", help=help
    )


def _loader_options(p: argparse.ArgumentParser) -> None:
    """Options reading a raw runs table: column mapping, row filters, derived columns, best-of-sweep."""
    _column_option(
        p,
        "which source column is a runs column, e.g. params=N_no_emb (repeatable; "
        "NAME= uses no column for NAME)",
    )
    p.add_argument(
        "--columns",
        dest="columns_file",
        type=Path,
        default=None,
        help="JSON/TOML file mapping NAME to SOURCE",
    )
    p.add_argument(
        "--where",
        action="append",
        default=[],
        metavar="'COLUMN OP VALUE'",
        help="keep rows where COLUMN OP VALUE holds, OP one of < <= > >= == != (repeatable: all must hold)",
    )
    p.add_argument(
        "--best-of",
        default=None,
        metavar="COLUMN",
        help="a sweep column (e.g. peak_lr): keep the lowest loss per (params, tokens[, group])",
    )
    p.add_argument(
        "--flops-per-param-token",
        dest="loader_k",
        type=_positive_float,
        default=None,
        metavar="K",
        help="FLOP convention C = K N D of the table: derives params (tokens) from compute and tokens "
        "(params) and checks a compute column against it (default 6)",
    )


def _priors_option(p: argparse.ArgumentParser) -> None:
    """``--priors FILE``: priors replacing a fit's defaults (``bayescale laws`` lists them)."""
    p.add_argument(
        "--priors",
        type=Path,
        default=None,
        metavar="FILE",
        help="JSON or TOML file of priors by parameter, replacing the defaults `bayescale laws` lists",
    )


def _out_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--out", type=Path, default=None, help="also save the fit (NetCDF) for `summary` and `plan` later"
    )
