"""Saveable fits without sampling, for the fault and security tests (no compile, under a second)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

import bayescale as bs


def cheap_fit(runs: pd.DataFrame | None = None, seed: int = 0) -> bs.Fit:
    """A hand-built chinchilla fit with every group a saved fit has (see conftest.hand_built_fit)."""
    from conftest import TRUE_CHINCHILLA, hand_built_fit, simulate_ladder

    from bayescale.methods.parametric import _tidy

    runs = simulate_ladder("chinchilla", TRUE_CHINCHILLA, seed=7) if runs is None else runs
    # 2 x 300 independent draws: bulk ESS ~600 passes the diagnostics, so no warning in the output.
    fit = hand_built_fit("chinchilla", runs, TRUE_CHINCHILLA, draws=300, seed=seed)
    fit.idata = _tidy(fit.idata, fit.law, fit.runs, fit.fixed, fit.likelihood)
    return fit


def cheap_fit_file(path: Path, runs: pd.DataFrame | None = None) -> Path:
    """Save :func:`cheap_fit` at ``path`` and return it."""
    return cheap_fit(runs).save(path)


def forge(src: Path, dst: Path, edit) -> Path:
    """Copy the saved fit ``src`` to ``dst`` with ``edit(tree)`` applied and every hash recomputed.

    What anyone can do with ``bayescale.methods.file_format``'s own hash functions: the loader must
    refuse the forged contents by checking them, not by the hashes. ``edit`` changes the
    ``xarray.DataTree`` in place (``tree["posterior"] = ...`` to replace a group's data).
    """
    from bayescale.inference import container
    from bayescale.methods import file_format

    tree = container.read_netcdf(src).load()
    attrs = dict(tree["posterior"].attrs)
    edit(tree)
    posterior = tree["posterior"].to_dataset()
    attrs = {**attrs, **posterior.attrs}
    attrs["config_hash"] = file_format.config_hash(attrs, tree["constant_data"].to_dataset())
    attrs["posterior_checksum"] = file_format.posterior_checksum(posterior)
    tree["posterior"] = posterior.assign_attrs(attrs)
    attrs["content_hash"] = file_format.content_hash(attrs, tree)
    tree["posterior"] = posterior.assign_attrs(attrs)
    dst.write_bytes(container.netcdf_bytes(tree))
    return dst
