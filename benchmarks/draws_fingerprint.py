"""Fingerprint the posterior draws of every fitting method on bundled data at fixed seeds.

Run before and after a change that must not alter results, and compare the two files:

    python benchmarks/draws_fingerprint.py --out before.json
    ... change ...
    python benchmarks/draws_fingerprint.py --out after.json --compare before.json

Each entry is a SHA-256 of the posterior's variables (name, dtype, shape and bytes), so
"identical" means bit for bit.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import sys
import warnings

import numpy as np

import bayescale as bs
from bayescale.data import datasets

SMALL = {"draws": 200, "tune": 200, "chains": 2, "progressbar": False}


def digest(posterior) -> str:
    """SHA-256 over every variable of a posterior, in name order."""
    h = hashlib.sha256()
    for name in sorted(posterior.data_vars):
        values = np.ascontiguousarray(posterior[name].values)
        h.update(f"{name}|{values.dtype}|{values.shape}".encode())
        h.update(values.tobytes())
    return h.hexdigest()


def fits() -> dict[str, object]:
    """One small fit per method and backend, at fixed seeds."""
    out: dict[str, object] = {}
    chin = datasets.load("chinchilla")
    out["fit chinchilla jax"] = bs.fit(chin, law="chinchilla", random_seed=1, **SMALL)
    out["fit chinchilla numpyro"] = bs.fit(chin, law="chinchilla", random_seed=1, backend="numpyro", **SMALL)
    out["fit kaplan-e jax"] = bs.fit(chin, law="kaplan-e", random_seed=2, **SMALL)
    blations = datasets.load("datablations")
    out["fit data-constrained jax"] = bs.fit(blations, law="data-constrained", random_seed=3, **SMALL)
    porian = datasets.load("porian-isoflop")
    out["isoflop porian"] = bs.fit_isoflop(
        porian, group="rw|tuned|short|const|standard|val", random_seed=4, **SMALL
    )
    curves = datasets.load_curves("gemstones")
    fit_envelope = (
        getattr(bs, "fit_envelope", None)
        or importlib.import_module("bayescale.methods.envelope").fit_envelope
    )
    out["envelope gemstones"] = fit_envelope(curves, random_seed=5, **SMALL)
    out["steps gemstones"] = bs.fit_steps(curves, random_seed=6, **SMALL)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--compare", default=None, help="an earlier output to compare with")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    result = {name: digest(f.idata.posterior) for name, f in fits().items()}
    with open(args.out, "w") as handle:
        json.dump(result, handle, indent=1)
    for name, value in result.items():
        print(f"{name:28s} {value[:16]}")
    if args.compare:
        with open(args.compare) as handle:
            before = json.load(handle)
        changed = [name for name in before if before[name] != result.get(name)]
        print(f"identical: {len(before) - len(changed)} of {len(before)}; changed: {changed or 'none'}")
        return 1 if changed else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
