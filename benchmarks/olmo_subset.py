"""Write ``data/olmo_ladder.csv``: a small subset of the OLMo ladder for notebook 05 (Apache-2.0 data).

From ``../shared/anchors/olmo-ladder`` (Bhagia et al. 2024; see ``data/olmo_ladder.md``): the paper's 16
runs (190M-1B x 1, 2, 5, 10 x Chinchilla) and the six 3B runs. Per run, one ``final`` row (the mean of
its last 5 checkpoints, what the paper's step 1 fits) and, for the 16 paper runs, 15 of its processed
checkpoints (first 10% dropped, trailing 5-point moving average, as the paper's step 2; evenly
thinned). Per task: the task loss in bits per byte (``bpb_<task>``) and the accuracy (``acc_<task>``).

Run: ``python benchmarks/olmo_subset.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from downstream import OLMO, OLMO_TASKS, REPO, olmo_frame

#: Checkpoints kept per paper run.
CHECKPOINTS = 15


def subset() -> pd.DataFrame:
    """The subset: one row per (run, checkpoint) with every task's bpb and accuracy."""
    parts = []
    for task in OLMO_TASKS:
        frame = olmo_frame(task)
        keep = (frame.paper | (frame["size"] == "3B")) & (frame.final | frame.paper)
        frame = frame[keep]
        rows = []
        for _, run in frame.groupby("run", sort=True):
            checkpoints = run[~run.final]
            pick = np.unique(np.linspace(0, len(checkpoints) - 1, CHECKPOINTS).round().astype(int))
            rows += [run[run.final], checkpoints.iloc[pick] if len(checkpoints) else checkpoints]
        part = pd.concat(rows).rename(columns={"bpb": f"bpb_{task}", "acc": f"acc_{task}"})
        parts.append(part.reset_index(drop=True))
    out = parts[0][["run", "size", "params", "tokens", "final", "paper"]].copy()
    for task, part in zip(OLMO_TASKS, parts, strict=True):
        assert (part[["run", "tokens"]].to_numpy() == out[["run", "tokens"]].to_numpy()).all()
        out[f"bpb_{task}"] = part[f"bpb_{task}"].round(6)
        out[f"acc_{task}"] = part[f"acc_{task}"].round(6)
    out["params"] = out["params"].astype("int64")
    out["tokens"] = out["tokens"].astype("int64")
    return out


if __name__ == "__main__":
    if not OLMO.exists():
        sys.exit(f"{OLMO} not found")
    table = subset()
    table.to_csv(REPO / "data" / "olmo_ladder.csv", index=False)
    print(f"{len(table)} rows, {table.run.nunique()} runs -> data/olmo_ladder.csv")
