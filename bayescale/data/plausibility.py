"""What no run table holds in the units bayescale reads: the limits, the refusal and the warnings.

A loss above :data:`MAX_LOSS_NATS` is refused (:func:`check_loss_units`); params or tokens that
look like millions or billions (:func:`warn_units`) and repeated rows (:func:`warn_duplicates`)
load with a :class:`~bayescale.errors.RunsWarning` giving the evidence.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from bayescale.data.schema import NUMERIC_COLUMNS
from bayescale.errors import RunsError, RunsWarning

#: No loss in nats per token exceeds this: the uniform distribution over a vocabulary of
#: 1M tokens is ln(1e6) = 13.8 nats, and bits per token over 50k tokens are 15.6.
MAX_LOSS_NATS = 20.0
#: Below these a column is almost surely in millions/billions rather than counts: the smallest
#: language models in published ladders have ~1e5 parameters and see ~1e7 tokens.
MIN_PLAUSIBLE_MAX_PARAMS = 1e4
MIN_PLAUSIBLE_MAX_TOKENS = 1e6
#: Published ladders train on 1 to 10^4 tokens per parameter; a median below this means
#: tokens and params are in different units (e.g. tokens in billions, params in counts).
MIN_PLAUSIBLE_TOKENS_PER_PARAM = 1e-3


def check_loss_units(loss: np.ndarray) -> None:
    """Raise for a loss that no language model reports in nats per token."""
    bad = np.flatnonzero(loss > MAX_LOSS_NATS)
    if bad.size:
        row = int(bad[0])
        raise RunsError(
            f"column 'loss' row {row}: {loss[row]:g} cannot be a loss in nats per token "
            f"(> {MAX_LOSS_NATS:g}; {bad.size} such row(s)). Perplexity? use log(perplexity). "
            "Bits per token? multiply by ln 2 = 0.693. A percentage or accuracy is not a loss"
        )


def warn_units(out: pd.DataFrame) -> None:
    """Warn, with the evidence, when params or tokens look like millions or billions."""
    params, tokens = out["params"].to_numpy(), out["tokens"].to_numpy()
    notes = []
    if params.max() < MIN_PLAUSIBLE_MAX_PARAMS:
        row = int(np.argmax(params))
        notes.append(
            f"column 'params': the largest value is {params[row]:g} (row {row}), below "
            f"{MIN_PLAUSIBLE_MAX_PARAMS:g}; params count parameters: are these millions (x 1e6) "
            "or billions (x 1e9)?"
        )
    if tokens.max() < MIN_PLAUSIBLE_MAX_TOKENS:
        row = int(np.argmax(tokens))
        notes.append(
            f"column 'tokens': the largest value is {tokens[row]:g} (row {row}), below "
            f"{MIN_PLAUSIBLE_MAX_TOKENS:g}; tokens count tokens: are these billions (x 1e9)?"
        )
    ratio = tokens / params
    if np.median(ratio) < MIN_PLAUSIBLE_TOKENS_PER_PARAM:
        row = int(np.argmin(ratio))
        notes.append(
            f"columns 'tokens'/'params': median tokens per parameter is {np.median(ratio):.3g} "
            f"(row {row}: {tokens[row]:g} tokens for {params[row]:g} params); ladders train on "
            "1-10^4 tokens per parameter: are tokens in billions or params in different units?"
        )
    if notes:
        warnings.warn("runs units look wrong:\n  - " + "\n  - ".join(notes), RunsWarning, stacklevel=4)


def warn_duplicates(out: pd.DataFrame) -> None:
    """Warn about identical rows, keeping them, and say how to drop them."""
    keys = [c for c in (*NUMERIC_COLUMNS, "group") if c in out.columns]
    repeats = np.flatnonzero(out.duplicated(subset=keys, keep="first").to_numpy())
    if repeats.size:
        first = int(repeats[0])
        twin = int(np.flatnonzero((out[keys] == out[keys].iloc[first]).all(axis=1).to_numpy())[0])
        warnings.warn(
            f"{repeats.size} run(s) repeat an earlier row exactly (row {first} equals row {twin}; "
            f"repeats at rows {repeats[:10].tolist()}{' ...' if repeats.size > 10 else ''}). They are "
            "kept and count as independent runs; drop them with runs.drop_duplicates() or "
            "frame.drop_duplicates() if they are copies",
            RunsWarning,
            stacklevel=4,
        )
