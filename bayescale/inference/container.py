"""The container of a fit's draws, named in one place: an ``xarray.DataTree`` of ArviZ groups.

PyMC 6 and ArviZ 1.x hold a posterior as an ``xarray.DataTree`` whose children
are the ArviZ groups (``posterior``, ``sample_stats``, ``observed_data``,
``constant_data``, ``log_likelihood``); ArviZ 0.x held an ``InferenceData``.
Every module reads and builds groups through these functions, so a change of
container touches this file only. A group is read as a plain ``xarray.Dataset``
(a copy of the node's variables, not a view): callers may add or drop variables
without changing the tree.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr


def from_groups(**groups: xr.Dataset) -> xr.DataTree:
    """A tree with one child per ArviZ group, e.g. ``from_groups(posterior=ds, sample_stats=stats)``."""
    return xr.DataTree.from_dict({name: ds for name, ds in groups.items()})


def group_names(tree: xr.DataTree) -> list[str]:
    """The names of the groups in ``tree`` (its children), in order."""
    return [str(name) for name in tree.children]


def has_group(tree: xr.DataTree, name: str) -> bool:
    """Whether ``tree`` holds the group ``name``."""
    return name in tree.children


def group(tree: xr.DataTree, name: str) -> xr.Dataset:
    """The group ``name`` of ``tree`` as an ``xarray.Dataset``, with its attrs.

    Raises
    ------
    KeyError
        When ``tree`` has no such group.
    """
    return tree.children[name].to_dataset(inherit=False)


def posterior(tree: xr.DataTree) -> xr.Dataset:
    """The ``posterior`` group of ``tree`` (:func:`group`)."""
    return group(tree, "posterior")


def with_group(tree: xr.DataTree, name: str, ds: xr.Dataset) -> xr.DataTree:
    """A copy of ``tree`` whose group ``name`` is ``ds`` (added or replaced)."""
    groups = {g: group(tree, g) for g in group_names(tree)}
    groups[name] = ds
    return from_groups(**groups)


def read_netcdf(path: str | Path) -> xr.DataTree:
    """Read a tree written from :func:`netcdf_bytes` (or by ArviZ 0.x's ``InferenceData.to_netcdf``).

    Both write one NetCDF group per ArviZ group, so files of either are read
    alike. The arrays are loaded into memory and the file closed.
    """
    with xr.open_datatree(path, engine="h5netcdf") as tree:
        return tree.load().copy()


def netcdf_bytes(tree: xr.DataTree) -> bytes:
    """``tree`` as the bytes of a NetCDF (HDF5) file, one NetCDF group per ArviZ group, built in memory."""
    return bytes(tree.to_netcdf(engine="h5netcdf"))


def to_numpy(tree: xr.DataTree) -> xr.DataTree:
    """``tree`` with every variable's values a NumPy array.

    PyMC's JAX samplers (numpyro) leave JAX arrays in the tree; xarray then computes
    quantiles with JAX, which rounds differently from NumPy, so a result would answer
    differently in the last digit before and after a save.
    """

    def numpy_values(ds: xr.Dataset) -> xr.Dataset:
        return ds.copy(data={name: np.asarray(var.data) for name, var in ds.data_vars.items()})

    return tree.map_over_datasets(numpy_values)


def to_tree(data: Any) -> xr.DataTree:
    """A sampler's result as a tree: a ``DataTree`` as it is, anything else through ArviZ's converter."""
    if isinstance(data, xr.DataTree):
        return data
    from arviz_base import convert_to_datatree

    return convert_to_datatree(data)
