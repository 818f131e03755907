"""Dask hidden from the ``bayescale`` command until ``fit-many --scheduler`` asks for a cluster.

Outside the package and standard library only, like ``_bayescale_cli``: the command hides the
cluster modules before its first import of the package (xarray decides on import whether Dask
is there), and :mod:`bayescale.cli.many` reveals them for a cluster. Both import this module,
so neither imports the other.
"""

from __future__ import annotations

import sys

#: Installed (the ``dask`` and ``dev`` extras), these are imported by xarray on every read and
#: write of a saved fit, to look for dask arrays and a dask scheduler: ~0.6 s of each command,
#: whose arrays are NumPy's. Hidden until ``fit-many --scheduler`` asks for a cluster.
CLUSTER_MODULES = ("dask", "distributed")


def hide_cluster_modules() -> None:
    """Make the cluster modules look absent: ``import`` fails and ``find_spec`` gives None."""
    for name in CLUSTER_MODULES:
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]


def reveal_cluster_modules() -> None:
    """Undo :func:`hide_cluster_modules`: the installed cluster modules import again."""
    for name in CLUSTER_MODULES:
        if name in sys.modules and sys.modules[name] is None:
            del sys.modules[name]
