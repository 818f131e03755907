"""Kaplan et al. (2020) laws: L(N, D) of eq. 1.5 and its single-variable limits."""

from __future__ import annotations

from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

from bayescale.laws.base import Parameter, ScalingLaw, register
from bayescale.laws.ops import logsumexp
from bayescale.priors import Prior

N_C = Parameter(
    "N_c",
    Prior("LogNormal", mu=30.0, sigma=5.0),
    "Kaplan's N_c is 6.4e13-8.8e13 (log 31-32); sd 5 on the log scale covers other tokenizers",
    "critical parameter count (loss scale of the size term)",
)
D_C = Parameter(
    "D_c",
    Prior("LogNormal", mu=30.0, sigma=5.0),
    "Kaplan's D_c is 1.8e13-5.4e13 (log 30-31); sd 5 on the log scale",
    "critical token count (loss scale of the data term)",
)
KAPLAN_ALPHA_N = Parameter(
    "alpha_N",
    Prior("LogNormal", mu=-2.5, sigma=0.7),
    "without an irreducible term exponents are small: Kaplan 0.076; median 0.08, 90% in 0.026-0.26",
    "exponent of the model-size term",
)
KAPLAN_ALPHA_D = Parameter(
    "alpha_D",
    Prior("LogNormal", mu=-2.5, sigma=0.7),
    "without an irreducible term exponents are small: Kaplan 0.095-0.103; median 0.08",
    "exponent of the data term",
)


class KaplanLaw(ScalingLaw):
    """L(N, D) = [(N_c / N)^(alpha_N / alpha_D) + D_c / D]^alpha_D (Kaplan et al. 2020, eq. 1.5)."""

    name = "kaplan"
    title = "Kaplan L(N, D) (Kaplan et al. 2020)"
    reference = "Kaplan et al. 2020, Scaling Laws for Neural Language Models, eq. 1.5"
    formula = "L = [(N_c / N)^(alpha_N / alpha_D) + D_c / D]^alpha_D"
    parameters = (N_C, D_C, KAPLAN_ALPHA_N, KAPLAN_ALPHA_D)

    def log_loss(self, theta: Mapping[str, Any], x: Mapping[str, Any], ops: SimpleNamespace) -> Any:
        """``alpha_D * log[(N_c/N)^(alpha_N/alpha_D) + D_c/D]``."""
        log_nc, log_dc = ops.log(theta["N_c"]), ops.log(theta["D_c"])
        alpha, beta = theta["alpha_N"], theta["alpha_D"]
        terms = [alpha / beta * (log_nc - x["log_params"]), log_dc - x["log_tokens"]]
        return beta * logsumexp(terms, ops)


class KaplanNLaw(ScalingLaw):
    """L(N) = (N_c / N)^alpha_N: models trained to convergence on ample data (eq. 1.1)."""

    name = "kaplan-n"
    title = "Kaplan L(N) (Kaplan et al. 2020)"
    reference = "Kaplan et al. 2020, eq. 1.1"
    formula = "L = (N_c / N)^alpha_N"
    parameters = (N_C, KAPLAN_ALPHA_N)
    required_columns = ("params",)

    def log_loss(self, theta: Mapping[str, Any], x: Mapping[str, Any], ops: SimpleNamespace) -> Any:
        """``alpha_N * (log N_c - log N)``."""
        return theta["alpha_N"] * (ops.log(theta["N_c"]) - x["log_params"])


class KaplanDLaw(ScalingLaw):
    """L(D) = (D_c / D)^alpha_D: large models trained with early stopping (eq. 1.2)."""

    name = "kaplan-d"
    title = "Kaplan L(D) (Kaplan et al. 2020)"
    reference = "Kaplan et al. 2020, eq. 1.2"
    formula = "L = (D_c / D)^alpha_D"
    parameters = (D_C, KAPLAN_ALPHA_D)
    required_columns = ("tokens",)

    def log_loss(self, theta: Mapping[str, Any], x: Mapping[str, Any], ops: SimpleNamespace) -> Any:
        """``alpha_D * (log D_c - log D)``."""
        return theta["alpha_D"] * (ops.log(theta["D_c"]) - x["log_tokens"])


KAPLAN = register(KaplanLaw())
KAPLAN_N = register(KaplanNLaw())
KAPLAN_D = register(KaplanDLaw())
