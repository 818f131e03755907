"""The listings: ``bayescale laws`` and ``bayescale datasets``."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

from bayescale.cli.options import Subcommands

if TYPE_CHECKING:
    from bayescale.model.laws.base import Parameter
    from bayescale.model.priors import Prior


def add_laws(sub: Subcommands) -> None:
    """Add ``bayescale laws`` to the subcommands ``sub``."""
    p = sub.add_parser("laws", help="list the laws, their parameters and default priors")
    p.add_argument("--json", action="store_true")


def cmd_laws(args: argparse.Namespace) -> int:
    """``bayescale laws``: each law with its formula, parameters and default priors."""
    from bayescale.model.laws import get_law, list_laws
    from bayescale.model.prior_sets import list_prior_sets, prior_set_info
    from bayescale.model.priors import Prior

    described = [get_law(name).describe() for name in list_laws()]
    if args.json:
        print(json.dumps(described, indent=2))
        return 0
    for info in described:
        print(f"{info['name']}: {info['formula']}  [{info['reference']}]")
        print(f"  needs columns: {', '.join(info['required_columns'])}")
        for name, spec in info["parameters"].items():
            print(_prior_line(name, Prior.from_dict(spec["prior"]), spec["reason"]))
    print("informed prior sets (fit --priors-from SET):")
    for name in list_prior_sets():
        info = prior_set_info(name)
        print(f"  {name} [law {info['law']}]: {info['description']}")
    print("the methods' default priors (isoflop, envelope, steps --priors FILE replaces them):")
    for method, note, params in _method_priors():
        print(f"{method}: {note}")
        for p in params:
            print(_prior_line(p.name, p.prior, p.reason))
    return 0


def _prior_line(name: str, prior: Prior, reason: str) -> str:
    return f"  {name:<9} {prior.describe()}: {reason}"


def _method_priors() -> list[tuple[str, str, list[Parameter]]]:
    """Each method's parameters with their default priors, every option's included."""
    from bayescale.methods import envelope, isoflop, training_steps

    return [
        (
            "isoflop",
            "skew with --shape skewed, nu with the student_t likelihood; log_loss_opt (centred on "
            "each budget's best run) takes none",
            list(isoflop.default_priors("student_t", "skewed").values()),
        ),
        (
            "envelope",
            "rho with --correlation ar1; each run's E (centred on its lowest loss) takes none",
            list(envelope.default_priors("ar1").values()),
        ),
        (
            "steps",
            "B_star, alpha_B when B_crit is fitted, rho with --correlation ar1, nu with the "
            "student_t likelihood",
            list(training_steps.default_priors(True, "ar1", "student_t").values()),
        ),
    ]


def add_datasets(sub: Subcommands) -> None:
    """Add ``bayescale datasets`` to the subcommands ``sub``."""
    p = sub.add_parser("datasets", help="list the bundled data sets")
    p.add_argument("--json", action="store_true")


def cmd_datasets(args: argparse.Namespace) -> int:
    """``bayescale datasets``: bundled data sets, one line each."""
    from bayescale.data import datasets

    table = datasets.describe()
    if args.json:
        print(table.to_json(orient="records", indent=2))
    else:
        for _, row in table.iterrows():
            print(f"{row['name']:<16} {row['description']}")
    return 0
