"""Kaplan et al. (2020) laws: L(N, D) of eq. 1.5, its single-variable limits, and the form with E."""

from __future__ import annotations

from collections.abc import Mapping
from types import SimpleNamespace
from typing import Any

from bayescale.model.laws.base import Parameter, ScalingLaw, register
from bayescale.model.laws.chinchilla import ALPHA_D, ALPHA_N, E, theta_log
from bayescale.model.laws.ops import logsumexp
from bayescale.model.priors import Prior

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


#: With an irreducible term the critical scales map onto Chinchilla's amplitudes in the limits
#: (D -> inf: (N_c/N)^alpha_N = A/N^alpha_N, so log N_c = log A / alpha_N; likewise log D_c).
KAPLAN_E_N_C = Parameter(
    "N_c",
    Prior("LogNormal", mu=18.0, sigma=4.0),
    "log N_c = log A / alpha_N is 17.7 (Hoffmann), 17.8 (Epoch), 17.7 (Muennighoff); sd 4 on the log scale",
    "parameter count at which the size term is 1 nat/token",
)
KAPLAN_E_D_C = Parameter(
    "D_c",
    Prior("LogNormal", mu=21.0, sigma=4.0),
    "log D_c = log B / alpha_D is 21.5 (Hoffmann), 20.9 (Epoch), 20.7 (Muennighoff); sd 4 on the log scale",
    "token count at which the data term is 1 nat/token",
)


class KaplanELaw(ScalingLaw):
    """L(N, D) = E + [(N_c / N)^(alpha_N / alpha_D) + D_c / D]^alpha_D.

    Kaplan et al. (2020) eq. 1.5 plus an irreducible loss: the "power law plus
    constant" form, L = L_inf + (x_0/x)^alpha_x, that Henighan et al. (2020)
    fit in every domain they studied, and the levelling-off at the entropy of
    text that Kaplan et al. expect (section 6.3). With E the exponents describe
    only the reducible loss, so they are Chinchilla-sized (~0.3), not ~0.08.
    """

    name = "kaplan-e"
    title = "Kaplan L(N, D) plus irreducible loss (Kaplan et al. 2020; Henighan et al. 2020)"
    reference = (
        "Kaplan et al. 2020, eq. 1.5, plus the irreducible term of Henighan et al. 2020, "
        "Scaling Laws for Autoregressive Generative Modeling (L = L_inf + (x_0/x)^alpha_x)"
    )
    formula = "L = E + [(N_c / N)^(alpha_N / alpha_D) + D_c / D]^alpha_D"
    parameters = (E, KAPLAN_E_N_C, KAPLAN_E_D_C, ALPHA_N, ALPHA_D)

    def log_loss(self, theta: Mapping[str, Any], x: Mapping[str, Any], ops: SimpleNamespace) -> Any:
        """``log(E + exp(alpha_D * logsumexp(...)))``: Kaplan's log mean plus E, in log space."""
        log_nc, log_dc = theta_log(theta, "N_c", ops), theta_log(theta, "D_c", ops)
        alpha, beta = theta["alpha_N"], theta["alpha_D"]
        terms = [alpha / beta * (log_nc - x["log_params"]), log_dc - x["log_tokens"]]
        return logsumexp([theta_log(theta, "E", ops), beta * logsumexp(terms, ops)], ops)


KAPLAN = register(KaplanLaw())
KAPLAN_N = register(KaplanNLaw())
KAPLAN_D = register(KaplanDLaw())
KAPLAN_E = register(KaplanELaw())
