"""Loss curves prepared for the envelope's model: log tokens and loss, a padded (run, checkpoint) grid.

The model is :mod:`bayescale.model.envelope`, the method :mod:`bayescale.methods.envelope`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from bayescale.data.curves import Curves


@dataclass(frozen=True)
class CurveData:
    """Curves prepared for the model: run index, log tokens, log loss, padded (run, checkpoint) grid."""

    curves: Curves
    run: np.ndarray
    log_tokens: np.ndarray
    log_loss: np.ndarray
    log_tokens_ref: np.ndarray
    params: np.ndarray
    kappa: float
    #: (run, checkpoint) arrays, each run's checkpoints left-aligned and the rest masked out:
    #: the model then broadcasts per-run parameters instead of gathering them per point (whose
    #: gradient is a scatter-add, 2-3x slower at 1e5 points).
    grid_u: np.ndarray
    grid_y: np.ndarray
    grid_mask: np.ndarray


def prepare(curves: Curves) -> CurveData:
    """Arrays of ``curves`` in table order (sorted by run, then tokens)."""
    run = curves.run_index()
    log_tokens = np.log(curves.column("tokens"))
    log_loss = np.log(curves.column("loss"))
    ratio = curves.column("compute") / (curves.column("params") * curves.column("tokens"))
    # each run's mean log tokens: there its G_r is least correlated with beta_r
    log_tokens_ref = pd.Series(log_tokens).groupby(run).mean().to_numpy()
    lengths = np.bincount(run)
    position = np.arange(len(run)) - np.r_[0, np.cumsum(lengths)[:-1]][run]
    shape = (len(lengths), int(lengths.max()))
    grid_u, grid_y, grid_mask = np.zeros(shape), np.zeros(shape), np.zeros(shape, dtype=bool)
    grid_u[run, position] = log_tokens - log_tokens_ref[run]
    grid_y[run, position] = log_loss
    grid_mask[run, position] = True
    return CurveData(
        curves=curves,
        run=run,
        log_tokens=log_tokens,
        log_loss=log_loss,
        log_tokens_ref=log_tokens_ref,
        params=curves.runs_table()["params"].to_numpy(dtype=float),
        kappa=float(np.exp(np.mean(np.log(ratio)))),
        grid_u=grid_u,
        grid_y=grid_y,
        grid_mask=grid_mask,
    )
