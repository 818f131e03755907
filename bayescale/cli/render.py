"""The renderer of the ``bayescale`` command's results: a readable text, or JSON with ``--json``.

The diagnostics lines come from :func:`bayescale.inference.diagnostics.summary_lines`.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

from bayescale.errors import printable
from bayescale.inference.diagnostics import summary_lines as diagnostics_lines
from bayescale.posterior.extrapolation import DISTANCE_COLUMNS
from bayescale.posterior.result import finite_or_none


def _emit(args: argparse.Namespace, payload: Any, text: str) -> None:
    print(_json(payload) if args.json else text)


def _json(payload: Any) -> str:
    """JSON with null for NaN and infinities (bare NaN is not JSON; strict parsers reject it)."""
    return json.dumps(_json_safe(payload), indent=2, allow_nan=False)


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item") and hasattr(value, "dtype"):  # numpy scalars
        return _json_safe(value.item())
    return value


def _summary_text(payload: dict[str, Any]) -> str:
    prob = payload["prob"]
    lines = [
        f"law {payload['law']} on {payload['n_runs']} runs; {prob:.0%} credible intervals",
        f"{'parameter':<10} {'median':>12} {'lower':>12} {'upper':>12} {'r_hat':>7} {'ess_bulk':>9}",
    ]
    for name, p in payload["parameters"].items():
        # r_hat is undefined (None) for a single chain.
        r_hat = "fixed" if p["fixed"] else "n/a" if p["r_hat"] is None else f"{p['r_hat']:.3f}"
        ess = "" if p["fixed"] or p["ess_bulk"] is None else f"{p['ess_bulk']:.0f}"
        lines.append(
            f"{name:<10} {p['median']:>12.5g} {p['lower']:>12.5g} {p['upper']:>12.5g} {r_hat:>7} {ess:>9}"
        )
    lines += diagnostics_lines(payload["diagnostics"])
    if payload.get("misfit"):
        lines.append(f"residuals: {payload['misfit']}")
    elif payload.get("residual_trends"):
        lines.append("residuals: no trend with " + ", ".join(payload["residual_trends"]) + " (p >= 0.01)")
    return "\n".join(lines)


def _intervals_text(title: str, intervals: dict[str, dict[str, float]]) -> str:
    lines = [title, f"{'quantity':<18} {'median':>12} {'lower':>12} {'upper':>12}"]
    for name, iv in intervals.items():
        lines.append(f"{name:<18} {iv['median']:>12.5g} {iv['lower']:>12.5g} {iv['upper']:>12.5g}")
    return "\n".join(lines)


def _distance_payload(row: Any) -> dict[str, float | None]:
    """The extrapolation guard's columns of one answer row (see ``bayescale.posterior.extrapolation``)."""
    return {name: finite_or_none(row[name]) for name in DISTANCE_COLUMNS if name in row.index}


def _warn_beyond(table: Any) -> None:
    """Print the guard's warning when an answer lies beyond the distance where coverage was measured."""
    message = table.attrs.get("extrapolation_warning")
    if message:
        print(f"warning: {printable(str(message))}", file=sys.stderr)
    for caveat in table.attrs.get("caveats", []):  # nu in the Cauchy regime, LOO preferring another law
        print(f"warning: {printable(str(caveat))}", file=sys.stderr)


def _interval_payload(row: Any, names: list[str]) -> dict[str, dict[str, float | None]]:
    from bayescale.posterior.intervals import row_to_intervals

    return {
        n: {k: finite_or_none(v) for k, v in iv.items()} for n, iv in row_to_intervals(row, names).items()
    }


def _rows_text(title: str, table: Any, inputs: list[str], names: list[str]) -> str:
    """One line per row: the inputs, then ``median [lower, upper]`` of each quantity."""
    head = [f"{c:>11}" for c in inputs] + [f"{n:>33}" for n in names]
    lines = [title, " ".join(head)]
    for _, row in table.iterrows():
        cells = [f"{row[c]:>11.4g}" for c in inputs]
        for n in names:
            iv = f"{row[n + '_median']:.4g} [{row[n + '_lower']:.4g}, {row[n + '_upper']:.4g}]"
            cells.append(f"{iv:>33}")
        lines.append(" ".join(cells))
    return "\n".join(lines)


def _method_text(title: str, payload: dict[str, Any]) -> str:
    lines = [_intervals_text(title, {k: payload[k] for k in ("a", "b")})]
    if payload.get("optimum"):
        opt = payload["optimum"]
        lines.append(_intervals_text(f"optimum at C = {opt['compute']:.3g} FLOPs", opt["intervals"]))
    lines += diagnostics_lines(payload["diagnostics"])
    return "\n".join(lines)


def _optimum(result: Any, compute: float | None, prob: float) -> dict[str, Any] | None:
    from bayescale.posterior.intervals import row_to_intervals

    if compute is None:
        return None
    row = result.optimal(compute, prob=prob).iloc[0]
    return {"compute": compute, "intervals": row_to_intervals(row, ["params", "tokens", "tokens_per_param"])}


def _isoflop_text(args: argparse.Namespace, result: Any) -> tuple[dict[str, Any], str]:
    payload = result.to_dict(args.prob)
    payload["optimum"] = _optimum(result, getattr(args, "compute", None), args.prob)
    budgets = "\n".join(
        f"  budget {b['budget']:.3g}: {b['n_runs']} runs ({b['compute_min']:.3g}-{b['compute_max']:.3g})"
        + _budget_unused(b)
        for b in payload["budgets"]
    )
    title = (
        f"IsoFLOP fit ({payload['shape']} profiles) on {payload['n_runs']} runs; {args.prob:.0%} intervals"
    )
    return payload, f"budget levels:\n{budgets}\n" + _method_text(title, payload)


def _budget_unused(budget: dict[str, Any]) -> str:
    """Why an IsoFLOP budget level was left out of the fit ('' when it was used)."""
    from bayescale.methods.isoflop import EDGE_SIZE_TOL, MIN_SIZES, left_out_unbracketed

    if budget["used"]:
        return ""
    if left_out_unbracketed(budget):
        return (
            f", not used: lowest loss at (within {EDGE_SIZE_TOL:.0%} of) its smallest or largest size "
            "(minimum not bracketed)"
        )
    return f", not used: {budget['n_in_window']} size(s) in the window < {MIN_SIZES}"


def _envelope_text(args: argparse.Namespace, result: Any) -> tuple[dict[str, Any], str]:
    payload = result.to_dict(args.prob)
    payload["optimum"] = _optimum(result, getattr(args, "compute", None), args.prob)
    title = (
        f"training-curve envelope on {payload['n_runs']} curves, {payload['n_points']} checkpoints "
        f"({payload['correlation']} residuals); {args.prob:.0%} intervals"
    )
    return payload, _method_text(title, payload)


def _steps_text(args: argparse.Namespace, result: Any) -> tuple[dict[str, Any], str]:
    payload = result.to_dict(args.prob)
    compute = getattr(args, "compute", None)
    if compute is not None:
        from bayescale.posterior.intervals import row_to_intervals

        row = result.optimal(compute, prob=args.prob).iloc[0]
        columns = [c[: -len("_median")] for c in row.index if c.endswith("_median")]
        payload["optimum"] = {"compute": compute, "intervals": row_to_intervals(row, columns)}
    names = result.parameter_names
    title = (
        f"Kaplan L(N, S_min) on {payload['n_runs']} curves, {payload['n_points']} checkpoints "
        f"({payload['correlation']} residuals); {args.prob:.0%} intervals"
    )
    lines = [_intervals_text(title, {k: payload[k] for k in names})]
    lines.append(
        "Kaplan et al. 2020: " + ", ".join(f"{k} {v:.3g}" for k, v in payload["kaplan_2020"].items())
    )
    lines.append(f"batch: {payload['batch_note']}")
    if "a" in payload:
        lines.append(
            _intervals_text(
                f"compute-optimal exponents, {payload['plan']}", {k: payload[k] for k in ("a", "b")}
            )
        )
    else:
        lines.append(f"no compute-optimal plan: {payload['plan']}")
    if payload.get("optimum"):
        opt = payload["optimum"]
        lines.append(_intervals_text(f"optimum at C = {opt['compute']:.3g} FLOPs", opt["intervals"]))
    lines += diagnostics_lines(payload["diagnostics"])
    return payload, "\n".join(lines)
