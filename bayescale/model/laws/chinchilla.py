"""Hoffmann et al. (2022) parametric law, Approach 3: L = E + A/N^alpha_N + B/D^alpha_D."""

from __future__ import annotations

from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

from bayescale.data.schema import FLOPS_PER_PARAM_TOKEN
from bayescale.model.laws.base import Centering, Parameter, ScalingLaw, register
from bayescale.model.laws.ops import logsumexp
from bayescale.model.priors import Prior

E = Parameter(
    "E",
    Prior("LogNormal", mu=0.5, sigma=0.75),
    "irreducible loss of text in nats/token; median 1.65, 90% in 0.5-5.7 covers every published fit",
    "irreducible loss [nats/token]",
)
A = Parameter(
    "A",
    Prior("LogNormal", mu=6.0, sigma=3.0),
    "published log A lie in 4-9 (Hoffmann 6.0, Epoch 6.2, Gemstones 4.9-5.4); sd 3 on the log scale",
    "amplitude of the finite-model term",
)
B = Parameter(
    "B",
    Prior("LogNormal", mu=7.0, sigma=4.0),
    "published log B lie in 6-15 (Hoffmann 6.0, Epoch 7.6, Gemstones 12.9-15); sd 4 on the log scale",
    "amplitude of the finite-data term",
)
ALPHA_N = Parameter(
    "alpha_N",
    Prior("LogNormal", mu=-1.0, sigma=0.6),
    "exponents of published LM fits lie in 0.05-0.8; median 0.37, 90% in 0.14-0.98",
    "exponent of the model-size term",
)
ALPHA_D = Parameter(
    "alpha_D",
    Prior("LogNormal", mu=-1.0, sigma=0.6),
    "exponents of published LM fits lie in 0.05-0.8; median 0.37, 90% in 0.14-0.98",
    "exponent of the data term",
)


class ChinchillaLaw(ScalingLaw):
    """L(N, D) = E + A / N^alpha_N + B / D^alpha_D (Hoffmann et al. 2022, eq. 2)."""

    name = "chinchilla"
    title = "Chinchilla (Hoffmann et al. 2022, Approach 3)"
    reference = "Hoffmann et al. 2022, Training Compute-Optimal Large Language Models, eq. 2"
    formula = "L = E + A / N^alpha_N + B / D^alpha_D"
    parameters = (E, A, B, ALPHA_N, ALPHA_D)
    centerings = (
        Centering("A", "alpha_N", "log_params"),
        Centering("B", "alpha_D", "log_tokens"),
    )

    def log_loss(self, theta: Mapping[str, Any], x: Mapping[str, Any], ops: SimpleNamespace) -> Any:
        """``log(E + A N^-alpha_N + B D^-alpha_D)`` as a log-sum-exp of three terms."""
        terms = [
            theta_log(theta, "E", ops),
            theta_log(theta, "A", ops) - theta["alpha_N"] * x["log_params"],
            theta_log(theta, "B", ops) - theta["alpha_D"] * x["log_tokens"],
        ]
        return logsumexp(terms, ops)

    def optimal_allocation(self, theta: Mapping[str, Any], compute: Any) -> dict[str, Any]:
        """N_opt = G (C/6)^a, D_opt = (C/6)^b / G with G = (alpha_N A / (alpha_D B))^(1/(alpha_N+alpha_D))."""
        import numpy as np

        alpha, beta = theta["alpha_N"], theta["alpha_D"]
        total = alpha + beta
        log_g = (np.log(alpha * theta["A"]) - np.log(beta * theta["B"])) / total
        log_half = np.log(compute / FLOPS_PER_PARAM_TOKEN)
        return {
            "params": np.exp(log_g + beta / total * log_half),
            "tokens": np.exp(-log_g + alpha / total * log_half),
            "a": beta / total,
            "b": alpha / total,
        }


class GroupedChinchillaLaw(ChinchillaLaw):
    """Chinchilla law with exponents shared across the runs' groups and E per group, partially pooled."""

    name = "chinchilla-grouped"
    title = "Chinchilla, grouped: shared exponents, E per group (partial pooling)"
    reference = "Hoffmann et al. 2022, eq. 2, with a partially pooled hierarchy over groups (bayescale)"
    formula = "L_g = E_g + A / N^alpha_N + B / D^alpha_D; log E_g ~ Normal(log E, E_tau)"
    pooled = ("E",)


class GroupedFullChinchillaLaw(ChinchillaLaw):
    """Chinchilla law with exponents shared across groups and E, A, B per group, partially pooled."""

    name = "chinchilla-grouped-full"
    title = "Chinchilla, grouped: shared exponents, E, A and B per group (partial pooling)"
    reference = "Hoffmann et al. 2022, eq. 2, with a partially pooled hierarchy over groups (bayescale)"
    formula = "L_g = E_g + A_g / N^alpha_N + B_g / D^alpha_D; log P_g ~ Normal(log P, P_tau) for P in E, A, B"
    pooled = ("E", "A", "B")
    pooled_noncentred = ("A", "B")


def theta_log(theta: Mapping[str, Any], name: str, ops: SimpleNamespace) -> Any:
    """``log theta[name]``, using a precomputed ``log_<name>`` when the sampler supplies one."""
    key = f"log_{name}"
    return theta[key] if key in theta else ops.log(theta[name])


CHINCHILLA = register(ChinchillaLaw())
GROUPED = register(GroupedChinchillaLaw())
GROUPED_FULL = register(GroupedFullChinchillaLaw())
