"""The listings: ``bayescale laws`` and ``bayescale datasets``."""

from __future__ import annotations

import argparse
import json

from bayescale.cli.options import Subcommands


def add_laws(sub: Subcommands) -> None:
    """Add ``bayescale laws`` to the subcommands ``sub``."""
    p = sub.add_parser("laws", help="list the laws, their parameters and default priors")
    p.add_argument("--json", action="store_true")


def cmd_laws(args: argparse.Namespace) -> int:
    """``bayescale laws``: each law with its formula, parameters and default priors."""
    from bayescale.model.laws import get_law, list_laws
    from bayescale.model.prior_sets import list_prior_sets, prior_set_info

    described = [get_law(name).describe() for name in list_laws()]
    if args.json:
        print(json.dumps(described, indent=2))
        return 0
    for info in described:
        print(f"{info['name']}: {info['formula']}  [{info['reference']}]")
        print(f"  needs columns: {', '.join(info['required_columns'])}")
        for name, spec in info["parameters"].items():
            prior = {k: v for k, v in spec["prior"].items() if k != "distribution"}
            args_text = ", ".join(f"{k}={v:g}" for k, v in prior.items())
            print(f"  {name:<9} {spec['prior']['distribution']}({args_text}): {spec['reason']}")
    print("informed prior sets (fit --priors-from SET):")
    for name in list_prior_sets():
        info = prior_set_info(name)
        print(f"  {name} [law {info['law']}]: {info['description']}")
    return 0


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
