"""From a raw table to canonical runs: column mapping, derived columns, row filters, best-of-sweep.

These are the options of the one runs loader (:meth:`bayescale.Runs.from_any`,
``bayescale fit --column/--columns/--where/--best-of``), applied in this order:

1. **column mapping** ``{"params": "N_no_emb"}``: which source column is which
   canonical column; an empty source (``{"compute": ""}``) uses no column for
   that name. Columns the mapping leaves unnamed keep the automatic aliases
   (:data:`bayescale.data.schema.COLUMN_ALIASES`); an alias of a mapped name stays an
   extra column.
2. **row filters** ``"COLUMN OP VALUE"`` with OP one of ``< <= > >= == !=``:
   numeric comparison for a numeric VALUE, string equality otherwise; COLUMN is
   a canonical or a source name. Parsed, never evaluated.
3. **derived columns**: compute from a logged FLOPs-per-token column,
   ``C = flops_per_token x D``; params from compute and tokens, ``N = C / (k D)``, or
   tokens from compute and params, with k the FLOP convention (default 6).
4. **best of a sweep** (``best_of="peak_lr"``): the lowest loss per (params,
   tokens) and per group and unique tokens when present; rows whose loss is
   missing (diverged runs) lose to any finite loss of their pair.

What a step did (rows kept, columns derived) is returned as notes, kept on
:attr:`bayescale.Runs.notes` and printed by the CLI. The checks on the FLOP
convention and on the spread of a ladder live here too.
"""

from __future__ import annotations

import difflib
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bayescale.data import schema
from bayescale.data.checkpoints import warn_mid_decay
from bayescale.data.config import parse_config
from bayescale.errors import RunsError, RunsWarning

#: Relative gap between ``compute`` and k N D above which the runs' FLOP convention is not k.
FLOPS_TOLERANCE = 0.1
#: A ladder whose tokens per parameter span less than this factor is "single-ratio".
MIN_RATIO_SPREAD = 2.5
#: Params (or tokens) spanning less than this factor leave their exponent weakly identified.
MIN_SIZE_SPREAD = 4.0
#: ``unique_tokens`` above ``tokens`` by at most this relative amount is rounding: clipped to tokens.
UNIQUE_TOKENS_RTOL = 1e-6

OPERATORS = ("<=", ">=", "==", "!=", "<", ">")
_WHERE = re.compile(r"^\s*(?P<column>.+?)\s*(?P<op><=|>=|==|!=|<|>)\s*(?P<value>.*?)\s*$")


def _canonical_names() -> tuple[str, ...]:
    return tuple(schema.COLUMN_ALIASES)


# --------------------------------------------------------------------------- column mapping


def parse_column_items(items: Iterable[str]) -> dict[str, str]:
    """``["params=N_no_emb", "tokens=D"]`` (the CLI's ``--column``) as a mapping canonical -> source."""
    mapping: dict[str, str] = {}
    for item in items:
        name, sep, source = str(item).partition("=")
        if not sep or not name.strip():
            raise RunsError(f"--column expects NAME=SOURCE_COLUMN (e.g. params=N_no_emb), got {item!r}")
        name = name.strip()
        if name in mapping:
            raise RunsError(f"--column gives {name!r} twice ({mapping[name]!r} and {source.strip()!r})")
        mapping[name] = source.strip()
    return mapping


def read_column_file(path: str | Path) -> dict[str, str]:
    """A column mapping from a JSON or TOML file: ``{"params": "N_no_emb"}``, flat or under ``columns``."""
    path = Path(path)
    if not path.is_file():
        raise RunsError(f"column mapping file {str(path)!r} does not exist")
    text = path.read_text()
    try:
        data: Any = parse_config(text, "toml" if path.suffix.lower() == ".toml" else "json")
    except (ValueError, UnicodeDecodeError) as exc:
        kind = "TOML" if path.suffix.lower() == ".toml" else "JSON"
        raise RunsError(f"column mapping file {str(path)!r} is not valid {kind}: {exc}") from None
    if isinstance(data, dict) and isinstance(data.get("columns"), dict):
        data = data["columns"]
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise RunsError(
            f"column mapping file {str(path)!r} must map canonical names to source columns, "
            'e.g. {"params": "N_no_emb", "tokens": "D"}'
        )
    return {str(k): v for k, v in data.items()}


def resolve_columns(columns: Sequence[Any], explicit: Mapping[str, str] | None = None) -> dict[Any, str]:
    """Source column -> canonical name: the explicit mapping first, then the automatic aliases.

    A source column already named like a canonical column that the mapping gives
    to another column is renamed ``<name>_unused`` (kept as an extra column).
    """
    canonical_columns = schema.canonical_columns
    if not explicit:
        return canonical_columns(columns)
    canon_names = _canonical_names()
    by_text = {str(c): c for c in columns}
    mapping: dict[Any, str] = {}
    for name, source in explicit.items():
        if name not in canon_names:
            hint = ""
            if source in canon_names:
                hint = f"; the canonical name comes first: {source}={name}"
            raise RunsError(
                f"column mapping: {name!r} is not a runs column (choose from {', '.join(canon_names)}){hint}"
            )
        if source == "":
            continue  # no column for this name
        if source not in by_text:
            close = difflib.get_close_matches(source, list(by_text), n=3, cutoff=0.5)
            raise RunsError(
                f"column mapping {name}={source}: the table has no column {source!r}"
                + (f"; did you mean {', '.join(repr(c) for c in close)}?" if close else "")
                + f" Columns: {list(by_text)}"
            )
        column = by_text[source]
        if column in mapping:
            raise RunsError(f"column mapping gives {source!r} to both {mapping[column]!r} and {name!r}")
        mapping[column] = name
    taken = set(explicit)
    lookup = {alias: canon for canon, aliases in schema.COLUMN_ALIASES.items() for alias in aliases}
    rest = [c for c in columns if c not in mapping and lookup.get(str(c).strip().lower()) not in taken]
    mapping.update(canonical_columns(rest))
    for column in columns:
        if column not in mapping and str(column) in taken:
            mapping[column] = f"{column}_unused"  # its name now belongs to the mapped column
    return mapping


# --------------------------------------------------------------------------- row filters


def parse_where(text: str) -> tuple[str, str, float | str]:
    """``"peak_lr <= 4e-3"`` as (column, operator, value); the value is a float when it reads as one."""
    match = _WHERE.match(str(text))
    if match is None or not match["column"] or match["value"] == "":
        raise RunsError(
            f"row filter {text!r} is not COLUMN OP VALUE with OP one of {' '.join(OPERATORS)} "
            "(e.g. 'params >= 1e8' or 'group == c4')"
        )
    column, op, raw = match["column"].strip(), match["op"], match["value"].strip()
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
        return column, op, raw[1:-1]  # quoted: a string
    try:
        return column, op, float(raw.replace("_", ""))
    except ValueError:
        if op not in ("==", "!="):
            raise RunsError(f"row filter {text!r}: {op} needs a number, got {raw!r}") from None
        return column, op, raw


def _find_column(frame: pd.DataFrame, name: str, renamed: Mapping[Any, str], what: str) -> Any:
    """The frame's column called ``name``, by its current (canonical) or its source name."""
    if name in frame.columns:
        return name
    for source, canon in renamed.items():
        if str(source) == name and canon in frame.columns:
            return canon
    close = difflib.get_close_matches(name, [str(c) for c in frame.columns], n=3, cutoff=0.5)
    raise RunsError(
        f"{what}: no column {name!r}"
        + (f"; did you mean {', '.join(repr(c) for c in close)}?" if close else "")
        + f" Columns: {[str(c) for c in frame.columns]}"
    )


def apply_where(
    frame: pd.DataFrame, filters: Sequence[str], renamed: Mapping[Any, str] | None = None
) -> tuple[pd.DataFrame, list[str]]:
    """Rows of ``frame`` meeting every filter, and a note of how many were kept."""
    if isinstance(filters, str):
        filters = [filters]
    keep = np.ones(len(frame), dtype=bool)
    for text in filters:
        name, op, value = parse_where(text)
        column = _find_column(frame, name, renamed or {}, f"row filter {text!r}")
        cells = frame[column]
        if isinstance(value, float):
            numbers = pd.to_numeric(cells.astype(str).str.strip().str.replace("_", ""), errors="coerce")
            numbers = numbers.to_numpy(dtype=float)
            bad = np.isnan(numbers) & cells.notna().to_numpy()
            if bad.any() and op not in ("==", "!="):
                row = int(np.flatnonzero(bad)[0])
                raise RunsError(
                    f"row filter {text!r}: column {name!r} row {row} holds {cells.iloc[row]!r}, not a number"
                )
            if bad.any():  # == / != on a text column: compare as text
                raw = _WHERE.match(str(text))["value"].strip()  # type: ignore[index]
                hit = (cells.astype(str).str.strip() == raw).to_numpy()
                hit = hit if op == "==" else ~hit
            else:
                hit = _compare(numbers, op, value)
        else:
            hit = (cells.astype(str).str.strip() == value).to_numpy()
            hit = hit if op == "==" else ~hit
        keep &= hit
        if not keep.any():
            raise RunsError(
                f"row filters {list(filters)} leave no rows (after {text!r}); "
                f"column {name!r} holds e.g. {_examples(cells)}"
            )
    notes = []
    if not keep.all():
        notes.append(f"row filters {' and '.join(filters)}: kept {int(keep.sum())} of {len(frame)} rows")
    return frame.loc[keep].reset_index(drop=True), notes


def _compare(x: np.ndarray, op: str, value: float) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        if op == "==":
            return np.isclose(x, value, rtol=1e-9, atol=0.0)
        if op == "!=":
            return ~np.isclose(x, value, rtol=1e-9, atol=0.0)
        return {"<": np.less, "<=": np.less_equal, ">": np.greater, ">=": np.greater_equal}[op](x, value)


def _examples(cells: pd.Series) -> str:
    values = pd.unique(cells.astype(str))
    return ", ".join(values[:6]) + (" ..." if len(values) > 6 else "")


# --------------------------------------------------------------------------- derived columns


def derive_columns(
    frame: pd.DataFrame, flops_per_param_token: float | None = None
) -> tuple[pd.DataFrame, list[str]]:
    """Fill a missing compute, then a missing params (or tokens): C = f D, N = C / (k D).

    ``f`` is a logged ``flops_per_token`` column; k the FLOP convention (default 6). A compute
    from ``f`` gives params (N = f / k) only when k is given: ``f`` counts attention too.
    """
    k = schema.FLOPS_PER_PARAM_TOKEN if flops_per_param_token is None else check_k(flops_per_param_token)
    notes: list[str] = []
    if "flops_per_token" in frame.columns and "compute" not in frame.columns and "tokens" in frame.columns:
        # A logged FLOPs per token is the ladder's own cost model (attention included): C = f D.
        frame = frame.copy()
        per_token = schema.positive_numeric(frame["flops_per_token"], "flops_per_token")
        frame["flops_per_token"] = per_token
        frame["compute"] = per_token * schema.positive_numeric(frame["tokens"], "tokens")
        notes.append(
            "derived 'compute' from 'flops_per_token' and 'tokens': C = flops_per_token x D; "
            f"compute {frame['compute'].min():.3g} to {frame['compute'].max():.3g}"
        )
    have = set(frame.columns)
    if notes and flops_per_param_token is None:
        # A logged FLOPs per token counts attention too: N = f / 6 would overstate N, so params
        # come from it only under a FLOP convention the user states (flops_per_param_token).
        return frame, notes
    for target, other in (("params", "tokens"), ("tokens", "params")):
        if target in have or not {"compute", other} <= have:
            continue
        out = frame.copy()
        compute = schema.positive_numeric(out["compute"], "compute")
        out[other] = schema.positive_numeric(out[other], other)
        out["compute"] = compute
        out[target] = compute / (k * out[other])
        letter, other_letter = ("N", "D") if target == "params" else ("D", "N")
        notes.append(
            f"derived {target!r} from 'compute' and {other!r}: {letter} = C / ({k:g} {other_letter}) "
            f"(FLOP convention k = {k:g}; give another with --flops-per-param-token / "
            f"flops_per_param_token=); {target} {out[target].min():.3g} to {out[target].max():.3g}"
        )
        return out, notes
    return frame, notes


def check_k(value: Any) -> float:
    """A FLOP convention k (FLOPs per parameter per token): a finite number > 0."""
    try:
        k = float(value)
    except (TypeError, ValueError):
        raise RunsError(f"flops_per_param_token must be a number > 0, got {value!r}") from None
    if not np.isfinite(k) or k <= 0:
        raise RunsError(f"flops_per_param_token must be a finite number > 0, got {value!r}")
    return k


# --------------------------------------------------------------------------- best of a sweep


def best_of_sweep(
    frame: pd.DataFrame, sweep: str, renamed: Mapping[Any, str] | None = None
) -> tuple[pd.DataFrame, list[str]]:
    """Keep the lowest loss per (params, tokens[, group, unique_tokens]) over the values of ``sweep``."""
    column = _find_column(frame, sweep, renamed or {}, f"best of {sweep!r}")
    keys = [c for c in ("params", "tokens", "group", "unique_tokens") if c in frame.columns]
    missing = [c for c in ("params", "tokens", "loss") if c not in frame.columns]
    if missing:
        raise RunsError(
            f"best of {sweep!r} needs column(s) {missing}; found {[str(c) for c in frame.columns]}"
        )
    out = frame.reset_index(drop=True).copy()
    for key in ("params", "tokens", "unique_tokens"):
        if key in out.columns:
            out[key] = schema.positive_numeric(out[key], key)
    loss = pd.to_numeric(out["loss"], errors="coerce").astype(float)
    loss = loss.where(np.isfinite(loss))
    order = pd.DataFrame({"loss": loss, "row": np.arange(len(out))})
    grouped = out[keys].astype(object).where(out[keys].notna(), "")  # NaN group labels fail later, named
    order = pd.concat([grouped, order], axis=1)
    # Lowest loss first; a missing loss (a diverged run) sorts last and wins only when its pair has no other.
    order = order.sort_values(["loss", "row"], na_position="last", kind="stable")
    best = order.drop_duplicates(subset=keys, keep="first")["row"].sort_values().to_numpy()
    kept = out.iloc[best].reset_index(drop=True)
    dropped = len(out) - len(kept)
    diverged = int(loss.isna().sum() - kept["loss"].pipe(pd.to_numeric, errors="coerce").isna().sum())
    text = (
        f"best of {sweep!r}: kept the lowest loss of each ({', '.join(keys)}) combination, "
        f"{len(kept)} runs; dropped {dropped} of {len(out)} rows"
    )
    if diverged:
        text += f" ({diverged} of them with a missing or non-finite loss)"
    notes = [text]
    edge = _edge_of_sweep(out, order, keys, column)
    if edge:
        notes.append(edge)
    return kept, notes


def _edge_of_sweep(out: pd.DataFrame, order: pd.DataFrame, keys: list[str], column: Any) -> str:
    """How often the best value is the smallest or largest one tried (sweeps of >= 3 values)."""
    values = pd.to_numeric(out[column], errors="coerce")
    if values.isna().any():
        return ""
    order = order.assign(value=values.to_numpy()[order["row"].to_numpy()])
    at_edge = tried = 0
    for _, block in order.groupby(keys, sort=False):
        distinct = np.unique(block["value"])
        if distinct.size < 3 or block["loss"].isna().all():
            continue
        tried += 1
        best = block["value"].iloc[0]
        at_edge += int(best in (distinct[0], distinct[-1]))
    if not at_edge:
        return ""
    return (
        f"best of {str(column)!r}: in {at_edge} of the {tried} combinations swept over >= 3 values the best "
        f"{str(column)!r} is the smallest or largest tried, so the sweep may not bracket the optimum there"
    )


# --------------------------------------------------------------------------- checks


def check_unique_tokens(out: pd.DataFrame) -> pd.DataFrame:
    """Clip ``unique_tokens`` a hair above ``tokens`` (relative :data:`UNIQUE_TOKENS_RTOL`), refuse more."""
    unique, tokens = out["unique_tokens"].to_numpy(), out["tokens"].to_numpy()
    too_many = np.flatnonzero(unique > tokens * (1 + UNIQUE_TOKENS_RTOL))
    if too_many.size:
        row = int(too_many[0])
        raise RunsError(
            f"column 'unique_tokens' row {row}: {unique[row]:.10g} unique tokens exceed the "
            f"{tokens[row]:.10g} training tokens by {unique[row] / tokens[row] - 1:.3g} (relative; "
            f"{too_many.size} row(s) affected); U cannot be larger than D"
        )
    above = np.flatnonzero(unique > tokens)
    if above.size:
        row = int(above[0])
        warnings.warn(
            f"column 'unique_tokens': {above.size} row(s) exceed 'tokens' by at most "
            f"{UNIQUE_TOKENS_RTOL:g} (relative), e.g. row {row}: {unique[row]:.10g} unique against "
            f"{tokens[row]:.10g} tokens; clipped to tokens (rounding in the source)",
            RunsWarning,
            stacklevel=5,
        )
        out = out.copy()
        out["unique_tokens"] = np.minimum(unique, tokens)
    return out


def check_flops(out: pd.DataFrame, flops_per_param_token: float | None = None) -> None:
    """Warn when the runs' ``compute`` is not k N D (k = 6 unless given) within :data:`FLOPS_TOLERANCE`."""
    k = schema.FLOPS_PER_PARAM_TOKEN if flops_per_param_token is None else check_k(flops_per_param_token)
    ratio = out["compute"].to_numpy() / (out["params"].to_numpy() * out["tokens"].to_numpy())
    lo, hi, median = float(ratio.min()), float(ratio.max()), float(np.median(ratio))
    if lo >= k * (1 - FLOPS_TOLERANCE) and hi <= k * (1 + FLOPS_TOLERANCE):
        return
    warnings.warn(
        f"column 'compute' is not {k:g} N D: compute / (params x tokens) runs from {lo:.3g} to {hi:.3g} "
        f"(median {median:.3g}; {lo / k:.2f}x to {hi / k:.2f}x of {k:g} N D). Plans use C = k N D with "
        f"k = {k:g} unless told: plan with --flops-per-param-token {median:.3g} (or 'estimate'; in Python "
        "flops_per_param_token=bayescale.data.columns.estimate_flops_per_param_token(fit.runs)), or check "
        "that params and compute count the same parameters (embeddings?)",
        RunsWarning,
        stacklevel=5,
    )


def estimate_flops_per_param_token(runs: Any) -> float:
    """The runs' FLOP convention: the median of compute / (params x tokens)."""
    frame = runs.frame if hasattr(runs, "frame") else runs
    ratio = frame["compute"].to_numpy(dtype=float) / (
        frame["params"].to_numpy(dtype=float) * frame["tokens"].to_numpy(dtype=float)
    )
    return float(np.median(ratio))


def ladder_problems(runs: Any, required: Sequence[str] = ("params", "tokens")) -> list[str]:
    """What a ladder's spread cannot identify: a single tokens-per-parameter ratio, narrow N or D."""
    frame = runs.frame if hasattr(runs, "frame") else runs
    problems = []
    n = frame["params"].to_numpy(dtype=float) if "params" in frame.columns else None
    d = frame["tokens"].to_numpy(dtype=float) if "tokens" in frame.columns else None
    if "params" in required and "tokens" in required and n is not None and d is not None:
        ratio = d / n
        if ratio.max() / ratio.min() < MIN_RATIO_SPREAD:
            sizes = np.unique(n)[:2]
            r = float(np.median(ratio))
            examples = "; ".join(f"N = {s:.3g} with D = {s * r / 4:.3g} and {s * r * 4:.3g}" for s in sizes)
            problems.append(
                f"all {len(ratio)} runs train on {ratio.min():.3g} to {ratio.max():.3g} tokens per parameter "
                f"(less than {MIN_RATIO_SPREAD:g}x apart): with D proportional to N the runs cannot tell "
                "alpha_N from alpha_D (nor A from B), so the split of a budget between N and D comes from "
                f"the priors. Add runs at other ratios, e.g. 4x fewer and 4x more tokens per parameter "
                f"at the smallest sizes ({examples})"
            )
    for column, symbol, exponent, has in (("params", "N", "alpha_N", n), ("tokens", "D", "alpha_D", d)):
        if column not in required or has is None:
            continue
        spread = has.max() / has.min()
        if spread < MIN_SIZE_SPREAD:
            problems.append(
                f"{column} span only {spread:.3g}x ({has.min():.3g} to {has.max():.3g}): too narrow to "
                f"identify {exponent}; add runs with {symbol} at least {MIN_SIZE_SPREAD:g}x apart "
                f"(e.g. {symbol} = {has.min() / 2:.3g} and {has.max() * 2:.3g})"
            )
    return problems


def warn_ladder(runs: Any, required: Sequence[str] = ("params", "tokens"), stacklevel: int = 3) -> None:
    """Emit :func:`ladder_problems` as one :class:`~bayescale.errors.RunsWarning`, and checkpoints' own.

    Checkpoints (a ``run`` on several rows) that may be mid-decay get a second warning
    (:func:`~bayescale.data.checkpoints.mid_decay_problem`).
    """
    problems = ladder_problems(runs, required)
    if problems:
        warnings.warn(
            "these runs cannot identify the exponents well:\n  - " + "\n  - ".join(problems),
            RunsWarning,
            stacklevel=stacklevel,
        )
    warn_mid_decay(runs, stacklevel=stacklevel)


def count_constrained(priors: Mapping[str, Any] | None, free: Iterable[str]) -> list[str]:
    """Free parameters that carry a prior the user gave (an informed prior constrains them)."""
    given = set(priors or {})
    return [name for name in free if name in given]


def duplicate_of(candidates: pd.DataFrame, runs: Any, rtol: float = 0.05) -> np.ndarray:
    """For each candidate, the row of an existing run within ``rtol`` in both N and D (else -1)."""
    frame = runs.frame if hasattr(runs, "frame") else runs
    n, d = frame["params"].to_numpy(dtype=float), frame["tokens"].to_numpy(dtype=float)
    out = np.full(len(candidates), -1, dtype=int)
    for i, (cn, cd) in enumerate(zip(candidates["params"], candidates["tokens"], strict=True)):
        close = np.flatnonzero(
            (np.abs(np.log(n / cn)) <= np.log1p(rtol)) & (np.abs(np.log(d / cd)) <= np.log1p(rtol))
        )
        if close.size:
            out[i] = int(close[0])
    return out


def off_ratio_candidates(runs: Any, sizes: int = 3, factor: float = 4.0) -> pd.DataFrame:
    """Runs at ``factor`` x fewer and more tokens per parameter than a single-ratio ladder's.

    At the ``sizes`` smallest model sizes of the ladder, where runs are cheapest.
    """
    frame = runs.frame if hasattr(runs, "frame") else runs
    n = np.unique(frame["params"].to_numpy(dtype=float))[:sizes]
    r = float(np.median(frame["tokens"].to_numpy(dtype=float) / frame["params"].to_numpy(dtype=float)))
    rows = [{"params": s, "tokens": s * r * m} for s in n for m in (1 / factor, factor)]
    return pd.DataFrame(rows)
