"""Which column is which: one-letter aliases taken when their values fit; candidates for a missing column.

A table whose columns do not carry the canonical names (:mod:`bayescale.data.schema`) gets an
error listing, for each missing column, the columns that could be it and the ``--column`` that
maps one (:func:`missing_message`).
"""

from __future__ import annotations

import difflib
import re
import warnings
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from bayescale.data import columns as loader
from bayescale.data.plausibility import MAX_LOSS_NATS, MIN_PLAUSIBLE_MAX_PARAMS, MIN_PLAUSIBLE_MAX_TOKENS
from bayescale.data.schema import COLUMN_ALIASES, FLOPS_PER_PARAM_TOKEN
from bayescale.errors import RunsWarning

#: One-letter aliases of optional columns, easily another column's name (a cluster id ``c``):
#: taken only when their values look like what they would mean.
SHORT_ALIASES = {"c": "compute", "u": "unique_tokens"}
#: A ``c`` column is compute when its median ratio to 6 N D is within this factor of 1.
COMPUTE_ALIAS_FACTOR = 10.0
#: A ``u`` column is unique tokens when its values are counts of at least this many tokens
#: (the smallest published ladders see ~1e7 tokens) and at most D.
MIN_PLAUSIBLE_UNIQUE_TOKENS = 1e5


def plausible_short_aliases(frame: pd.DataFrame, mapping: dict[Any, str]) -> dict[Any, str]:
    """Drop a one-letter alias (``c``, ``u``) whose values do not fit its meaning, with a warning.

    ``c`` must agree with 6 N D within a factor of :data:`COMPUTE_ALIAS_FACTOR` (median ratio);
    ``u`` must hold counts of at least :data:`MIN_PLAUSIBLE_UNIQUE_TOKENS` and at most D. A
    column that fails stays an extra column; spelled out (``compute``, ``unique_tokens``)
    it is taken as given and checked as before.
    """
    by_canon = {canon: col for col, canon in mapping.items()}
    if frame.empty or "params" not in by_canon or "tokens" not in by_canon:
        return mapping  # an empty table is refused below, with the other checks
    params = pd.to_numeric(frame[by_canon["params"]], errors="coerce").to_numpy(dtype=float)
    tokens = pd.to_numeric(frame[by_canon["tokens"]], errors="coerce").to_numpy(dtype=float)
    kept = dict(mapping)
    for col, canon in mapping.items():
        if str(col).strip().lower() not in SHORT_ALIASES:
            continue
        values = pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype=float)
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN (text) columns
            if canon == "compute":
                six_nd = FLOPS_PER_PARAM_TOKEN * params * tokens
                ratio = np.nanmedian(values / six_nd)
                fits = bool(np.isfinite(ratio) and 1 / COMPUTE_ALIAS_FACTOR <= ratio <= COMPUTE_ALIAS_FACTOR)
                evidence = (
                    f"median {np.nanmedian(values):.3g} against 6 N D median {np.nanmedian(six_nd):.3g}"
                )
            else:
                fits = bool(
                    np.all(np.isfinite(values))
                    and np.nanmin(values) >= MIN_PLAUSIBLE_UNIQUE_TOKENS
                    and np.all(values <= tokens * (1 + loader.UNIQUE_TOKENS_RTOL))
                )
                evidence = (
                    f"values {np.nanmin(values):.3g} to {np.nanmax(values):.3g}, "
                    f"tokens D median {np.nanmedian(tokens):.3g}"
                )
        if not fits:
            del kept[col]
            warnings.warn(
                f"column {col!r} was not taken as {canon!r}: its values ({evidence}) do not look like "
                f"{canon}; it is kept as an extra column. If it is {canon}, map it with "
                f"--column {canon}={col} (Python: columns={{{canon!r}: {str(col)!r}}})",
                RunsWarning,
                stacklevel=4,
            )
    return kept


#: Words that make a column a candidate for a missing canonical column (its name split at
#: non-letters, e.g. ``N_nonembed`` -> ``n``, ``nonembed``); close spellings count too.
CANDIDATE_WORDS: dict[str, frozenset[str]] = {
    "params": frozenset({"n", "params", "param", "parameters", "nparams", "nonembed", "model_size"}),
    "tokens": frozenset({"d", "tokens", "token", "toks"}),
    "loss": frozenset({"loss", "l", "nll", "xent", "ce"}),
}


def _plausible_values(canon: str, values: pd.Series) -> bool:
    """Whether a candidate column's values could be ``canon`` (numbers in its range)."""
    numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
    if numbers.size == 0 or not np.isfinite(numbers).any():
        return False
    top = float(np.nanmax(numbers))
    if canon == "params":
        return top >= MIN_PLAUSIBLE_MAX_PARAMS
    if canon == "tokens":
        return top >= MIN_PLAUSIBLE_MAX_TOKENS
    if canon == "loss":
        return 0 < top <= MAX_LOSS_NATS
    return True


def column_candidates(canon: str, frame: pd.DataFrame, taken: Iterable[Any] = ()) -> list[Any]:
    """The columns of ``frame`` (not in ``taken``) that could be the canonical column ``canon``.

    A candidate's name holds one of :data:`CANDIDATE_WORDS` or is close to an accepted
    name of ``canon``, and its values fit (numbers of the right size).
    """
    taken = set(taken)
    words = CANDIDATE_WORDS.get(canon, frozenset({canon}))
    found = []
    for col in frame.columns:
        if col in taken:
            continue
        name = str(col).strip().lower()
        parts = {part for part in re.split(r"[^a-z]+", name) if part}
        # (one- and two-letter names are too short to be close to anything: ``lr`` is not ``l``)
        close = len(name) > 2 and any(
            difflib.SequenceMatcher(None, name, alias).ratio() >= 0.6
            for alias in COLUMN_ALIASES[canon]
            if len(alias) > 2
        )
        if (parts & words or name in words or close) and _plausible_values(canon, frame[col]):
            found.append(col)
    return found


def mapping_hint(canon: str, candidates: Sequence[Any]) -> str:
    """How to say which column is ``canon``: every candidate, and the ``--column`` to map one."""
    names = ", ".join(repr(str(c)) for c in candidates)
    example = str(candidates[0])
    how = f"--column {canon}={example} (Python: columns={{{canon!r}: {example!r}}})"
    if len(candidates) == 1:
        return f"{canon}: candidate column {names}: map it with {how}"
    return (
        f"{canon}: {len(candidates)} candidate columns {names}: map the one you mean with "
        f"--column {canon}=COLUMN, e.g. {how}"
    )


def missing_message(missing: list[str], frame: pd.DataFrame, mapping: dict[Any, str]) -> str:
    """Name the missing columns, list every candidate column for each and the ``--column`` to map it."""
    columns = list(frame.columns)
    hints = []
    for canon in missing:
        candidates = column_candidates(canon, frame, taken=mapping)
        if candidates:
            hints.append(mapping_hint(canon, candidates))
    message = f"runs are missing required column(s) {missing}; found {[str(c) for c in columns]}. "
    if hints:
        message += "Candidates: " + "; ".join(hints) + ". "
    elif len(columns) == 1 and any(sep in str(columns[0]) for sep in (";", "\t", "|", " ")):
        message += "The whole header was read as one column: is the file comma-separated? "
    return (
        message
        + "Accepted names: "
        + "; ".join(f"{c}: {', '.join(COLUMN_ALIASES[c])}" for c in missing)
        + ". Map any column with --column NAME=COLUMN (Python: columns={'NAME': 'COLUMN'})"
    )
