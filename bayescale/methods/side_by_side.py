"""Hoffmann et al.'s three methods side by side on one data set (their Table 2).

Approach 1: the training-curve envelope (:mod:`bayescale.methods.envelope`), needs loss curves.
Approach 2: IsoFLOP profiles (:mod:`bayescale.methods.isoflop`); from curves, the profiles are read off
the checkpoints at common budgets.
Approach 3: the parametric law L(N, D) = E + A/N^alpha + B/D^beta (:func:`bayescale.fit`), whose
optimum gives a = beta/(alpha+beta), b = alpha/(alpha+beta).
Kaplan (``steps``, not in Hoffmann's table; opt-in): L(N, S_min) on the curves' optimiser steps
(:mod:`bayescale.methods.training_steps`), planned on Kaplan's C_min frontier when the batch sizes vary,
else at the runs' one batch size.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from bayescale.data.curves import Curves
from bayescale.data.runs import Runs
from bayescale.errors import RunsError
from bayescale.inference.sampling import SamplerSettings, fold_sampler_keywords
from bayescale.posterior.intervals import interval_dict, row_to_intervals

METHODS = ("envelope", "isoflop", "parametric", "steps")
#: Hoffmann et al.'s three approaches, what :func:`compare_methods` runs unless told otherwise
DEFAULT_METHODS = ("envelope", "isoflop", "parametric")
APPROACH: dict[str, int | str] = {"envelope": 1, "isoflop": 2, "parametric": 3, "steps": "Kaplan"}


def isoflop_from_curves(curves: Curves, n_budgets: int = 8, min_runs: int = 4) -> Runs:
    """IsoFLOP points read off loss curves: loss at budget C of each run that reached C.

    Budgets are log-spaced over the compute reached by at least ``min_runs`` runs; each run's
    log loss is interpolated linearly in log tokens between its checkpoints (no extrapolation).
    """
    from bayescale.methods.envelope import compute_grid, prepare

    data = prepare(curves)
    grid = compute_grid(data, 4 * n_budgets)
    usable = grid[grid["n_runs"] >= min_runs]["compute"].to_numpy()
    if usable.size < 2:
        raise RunsError(f"fewer than {min_runs} curves reach a common compute; no IsoFLOP profiles")
    budgets = np.geomspace(usable.min(), usable.max(), n_budgets)
    rows = []
    for r, n in enumerate(data.params):
        mask = data.run == r
        log_t, log_l = data.log_tokens[mask], data.log_loss[mask]
        log_d = np.log(budgets / (data.kappa * n))
        inside = (log_d >= log_t.min()) & (log_d <= log_t.max())
        for c, d in zip(budgets[inside], log_d[inside], strict=True):
            rows.append(
                {"params": n, "tokens": np.exp(d), "compute": c, "loss": np.exp(np.interp(d, log_t, log_l))}
            )
    return Runs.from_frame(pd.DataFrame(rows), source=f"{curves.source} (IsoFLOP points from curves)")


def _load(
    source: Any, group: str | None, options: Mapping[str, Any] | None = None
) -> tuple[Runs, Curves | None]:
    """The data as Runs (every row a run) and, when it has a run column, as Curves.

    ``options`` are the loader options of :meth:`~bayescale.Runs.from_any` (``columns``, ...).
    """
    from bayescale.data import datasets

    options = {k: v for k, v in (options or {}).items() if v is not None}
    curves = None
    if isinstance(source, Curves):
        curves = source if not options else Curves.from_any(source, **options)
    elif isinstance(source, str) and source in datasets.names():
        if datasets.info(source).curves:  # the bundled set says whether it holds curves
            curves = Curves.from_any(source, **options) if options else datasets.load_curves(source)
    else:
        try:
            curves = Curves.from_any(source, **options)
        except RunsError:
            curves = None
    runs = curves.as_runs() if curves is not None else Runs.from_any(source, **options)
    if group is not None:
        if "group" not in runs.frame.columns or group not in set(runs.frame["group"]):
            raise RunsError(f"no runs in group {group!r}")
        runs = runs.subset(runs.frame["group"].to_numpy() == group)
        if curves is not None:
            curves = Curves(
                curves.frame[curves.frame["group"] == group].reset_index(drop=True), curves.source
            )
    return runs, curves


def _fit_method(
    method: str,
    runs: Runs,
    curves: Curves | None,
    compute: float,
    settings: dict[str, Any],
    bracketed: bool = True,
) -> tuple[Any, Any, int, str]:
    """Fit one method: its result, draws of a and b, the points it used and a note.

    ``settings`` are the fit's ``sampler``, ``random_seed`` and ``progressbar``; ``bracketed``
    is passed to :func:`~bayescale.methods.isoflop.fit_isoflop` (Approach 2 only).

    Raises
    ------
    RunsError
        When the data lack what the method needs (the caller turns it into the row's note).
    """
    if method in ("envelope", "steps") and curves is None:
        what = "loss curves (a run column)" if method == "envelope" else "loss curves with optimiser steps"
        raise RunsError(f"needs {what}")
    # one name per fit type below, so each result keeps its own type
    if method == "envelope":
        from bayescale.methods.envelope import fit_envelope

        assert curves is not None  # checked above
        envelope = fit_envelope(curves, **settings)
        return envelope, envelope.exponent_draws(), len(curves), "AR(1) within-run residuals"
    if method == "isoflop":
        from bayescale.methods.isoflop import fit_isoflop, left_out_unbracketed

        points = isoflop_from_curves(curves) if curves is not None else runs
        isoflop = fit_isoflop(points, bracketed=bracketed, **settings)
        notes = ["profiles read off the curves"] if curves is not None else []
        # (budgets with too few sizes are left out anyway: not named)
        dropped = isoflop.budgets["budget"][left_out_unbracketed(isoflop.budgets)]
        if len(dropped):
            notes.append(
                "budgets without a bracketed minimum left out: " + ", ".join(f"{c:.3g}" for c in dropped)
            )
        return isoflop, isoflop.exponent_draws(), int(isoflop.data.used.sum()), "; ".join(notes)
    if method == "steps":
        from bayescale.errors import RunsWarning
        from bayescale.methods.training_steps import fit_steps

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RunsWarning)  # one batch size: said in the row's note
            steps = fit_steps(curves, **settings)
        return steps, steps.exponent_draws(), len(steps.data.run), steps.plan_note()
    from bayescale.methods.parametric import fit_parametric

    # Checkpoints are rows of their run (its offset, spread sigma_run), not independent runs: as
    # independent runs, held-out ladders got 90% intervals 1-3% wide that missed 3 of 4 targets.
    checkpoints = runs if curves is None else Runs.from_frame(curves.frame, source=curves.source)
    parametric = fit_parametric(checkpoints, law="chinchilla", **settings)
    best = parametric.law.optimal_allocation(parametric.theta(), np.array([compute]))
    if best is None:  # the chinchilla law always has an optimum; this guards the Optional type
        raise RunsError("the chinchilla law gave no compute-optimal allocation")
    note = ""
    if curves is not None:
        note = "checkpoints share their run's offset (sigma_run); the learning-rate schedule is not modelled"
    return parametric, {"a": best["a"], "b": best["b"]}, len(runs), note


def compare_methods(
    source: Any,
    compute: float,
    *,
    group: str | None = None,
    methods: tuple[str, ...] = DEFAULT_METHODS,
    prob: float = 0.9,
    sampler: SamplerSettings | None = None,
    random_seed: int | None = None,
    bracketed: bool = True,
    columns: Mapping[str, str] | None = None,
    where: Sequence[str] | str | None = None,
    best_of: str | None = None,
    flops_per_param_token: float | None = None,
    **deprecated: Any,
) -> pd.DataFrame:
    """Fit each applicable method and tabulate a, b and the optimum at ``compute``.

    A method the data do not support (no curves for Approach 1 or ``steps``, no step or
    batch-size column for ``steps``, too few sizes...) gets a row whose ``note`` says why,
    instead of failing the table. ``bracketed`` (default) leaves out of Approach 2 the budgets whose
    lowest loss is at (within 10% of) their smallest or largest size (see
    :func:`~bayescale.methods.isoflop.fit_isoflop`); the row's note names them. ``False`` keeps them.
    ``columns``, ``where``, ``best_of`` and ``flops_per_param_token`` are the loader options of a
    raw table (see :meth:`bayescale.Runs.from_any`; curves read them as
    :meth:`bayescale.Curves.from_any` does).
    ``sampler`` (a :class:`~bayescale.SamplerConfig` or a mapping of some settings, as
    :func:`bayescale.fit` takes) is given to every method; the settings it leaves out are each
    method's own defaults. The keywords ``draws=``, ... ``target_accept=`` of earlier releases
    are deprecated (give them in ``sampler``) and still override it until the next release.

    Returns
    -------
    pandas.DataFrame
        One row per method: ``method``, ``approach``, ``n_points``, ``a_*``, ``b_*``,
        ``params_*``, ``tokens_*`` (``median``, ``lower``, ``upper``), ``seconds``,
        ``diagnostics_ok`` and ``note`` (why a method was skipped, or what it assumed).
    """
    from bayescale.inference.diagnostics import FitWarning

    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise RunsError(f"unknown method(s) {unknown}; use {list(METHODS)}")
    load = {"columns": columns, "where": where, "best_of": best_of}
    runs, curves = _load(source, group, {**load, "flops_per_param_token": flops_per_param_token})
    settings = {
        "sampler": fold_sampler_keywords(sampler, deprecated, "bayescale.compare_methods"),
        "random_seed": random_seed,
        "progressbar": False,
    }
    rows = []
    for method in methods:
        row: dict[str, Any] = {"method": method, "approach": APPROACH[method]}
        start = time.perf_counter()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FitWarning)  # reported in diagnostics_ok
                result, exps, n_points, note = _fit_method(method, runs, curves, compute, settings, bracketed)
        except RunsError as exc:  # the data lack what this method needs: say so in its row
            rows.append({**row, "note": f"skipped: {exc}"})
            continue
        row["seconds"] = round(time.perf_counter() - start, 1)
        row["n_points"] = n_points
        for name in ("a", "b"):
            for stat, value in interval_dict(exps[name], prob).items():
                row[f"{name}_{stat}"] = value
        optimum = result.optimal(compute, prob=prob).iloc[0]
        for name, iv in row_to_intervals(optimum, ["params", "tokens"]).items():
            row.update({f"{name}_{stat}": value for stat, value in iv.items()})
        row["diagnostics_ok"] = bool(result.diagnostics["ok"])
        row["note"] = note
        rows.append(row)
    table = pd.DataFrame(rows)
    table.insert(2, "compute", compute)
    if "n_points" in table:
        # a skipped method has no count: keep the column integer (not float with NaN)
        table["n_points"] = table["n_points"].astype("Int64")
    return table
