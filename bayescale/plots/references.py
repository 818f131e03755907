"""Published estimates drawn over figures of the Chinchilla runs.

Values are those of the anchors (``data/chinchilla.md``): Hoffmann et al.
(2022) Approach 3 from the paper's TeX source, Epoch AI's 2024 refit on the
240 non-outlier runs (Besiroglu et al., headline estimate), and the
Chinchilla 70B model trained with 5.76e23 FLOPs on 1.4e12 tokens.
"""

from __future__ import annotations

import numpy as np

from bayescale.model.laws import get_law

#: Hoffmann et al. (2022), Approach 3, eq. 10 (unrounded, from the TeX source).
HOFFMANN_2022 = {
    "E": float(np.exp(0.5267228)),
    "A": float(np.exp(6.0073404)),
    "B": float(np.exp(6.0179186)),
    "alpha_N": 0.33917084,
    "alpha_D": 0.2849083,
}

#: Epoch AI (Besiroglu et al. 2024), refit of Approach 3 on the extracted runs.
EPOCH_2024 = {"E": 1.81686, "A": 482.00572, "B": 2085.43420, "alpha_N": 0.34781, "alpha_D": 0.36585}

#: Chinchilla 70B: compute [FLOPs], parameters, tokens.
CHINCHILLA_70B = {"compute": 5.76e23, "params": 70e9, "tokens": 1.4e12}

#: Point estimates marked on the parameter figures, by label.
ESTIMATES = {"Hoffmann et al. 2022": HOFFMANN_2022, "Epoch AI 2024": EPOCH_2024}


def optimal_point(estimate: dict[str, float], compute: float) -> dict[str, float]:
    """Compute-optimal ``params`` and ``tokens`` of a Chinchilla-law point estimate at C = 6ND."""
    best = get_law("chinchilla").optimal_allocation(estimate, np.asarray(compute, dtype=float))
    assert best is not None  # the Chinchilla law has a closed form
    return {"params": float(best["params"]), "tokens": float(best["tokens"])}
