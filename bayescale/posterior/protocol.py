"""What the questions read of a fitted posterior, as a protocol: questions need not import ``Fit``.

:class:`bayescale.Fit` satisfies :class:`FitLike` without naming it, so planning, design,
comparison and averaging sit below the methods and call back into a fit only through what
it offers (:meth:`FitLike.variant_fit` refits the variant law).
"""

from __future__ import annotations

from typing import Protocol

import xarray as xr

from bayescale.data.runs import Runs
from bayescale.inference.diagnostics import Diagnostics
from bayescale.model.laws import ScalingLaw
from bayescale.model.likelihoods import Likelihood
from bayescale.model.priors import Prior


class FitLike(Protocol):
    """The posterior of a law fitted to runs, as the questions use it."""

    @property
    def law(self) -> ScalingLaw:
        """The fitted law."""
        ...

    @property
    def runs(self) -> Runs:
        """The runs the law was fitted to."""
        ...

    @property
    def priors(self) -> dict[str, Prior]:
        """The priors of the sampled parameters, by name."""
        ...

    @property
    def fixed(self) -> dict[str, float]:
        """Parameters held at a value instead of sampled, by name."""
        ...

    @property
    def likelihood(self) -> Likelihood:
        """The name of the noise model on log loss."""
        ...

    @property
    def diagnostics(self) -> Diagnostics:
        """The sampler's diagnostics report."""
        ...

    @property
    def posterior(self) -> xr.Dataset:
        """Posterior draws of every parameter (dims ``chain``, ``draw``)."""
        ...

    @property
    def free_parameters(self) -> list[str]:
        """Parameters that were sampled (not fixed)."""
        ...

    def theta(self, group: str | None = None) -> dict[str, xr.DataArray]:
        """Draws of every parameter, by name, for evaluating the law (a grouped law's ``group``)."""
        ...

    def variant_fit(self) -> FitLike | None:
        """The variant law fitted to the same runs, or ``None`` when there is none."""
        ...
