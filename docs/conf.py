"""Sphinx configuration of bayescale's documentation (``make docs`` builds it into docs/_build/html).

The stack is the PyData one PyMC and ArviZ use: the PyData theme, numpydoc for the docstrings,
MyST-NB for Markdown pages and the notebooks. The notebooks are rendered with the outputs stored
in them, never executed here (the test suite executes them).
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))  # this checkout's bayescale, not an installed one

import bayescale  # noqa: E402

project = "bayescale"
author = "the bayescale authors"
copyright = "2026, the bayescale authors"
version = release = bayescale.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "myst_nb",
]

# The notebooks live in ../notebooks (the tests run them there); they are copied in at each build.
NOTEBOOKS = DOCS / "notebooks"
if NOTEBOOKS.exists():
    shutil.rmtree(NOTEBOOKS)
NOTEBOOKS.mkdir()
for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
    shutil.copy2(notebook, NOTEBOOKS / notebook.name)

# .rst first: autosummary writes its generated stubs in the first suffix, and they are reST.
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "example_runs.csv"]
templates_path = ["_templates"]

# Render the stored outputs; never run a notebook at build time.
nb_execution_mode = "off"
myst_enable_extensions = ["dollarmath", "colon_fence", "deflist"]
myst_heading_anchors = 3

autosummary_generate = True
autodoc_typehints = "none"  # numpydoc's Parameters sections say the types
# A result's methods from its mixins (Fit's answers and tables, a method result's save and optimal) are
# its own to the reader; the builtins' (an exception's with_traceback) are not.
autodoc_default_options = {
    "members": True,
    "undoc-members": False,
    "show-inheritance": False,
    "inherited-members": "BaseException, Protocol, Generic, object",
}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

# No intersphinx: a build must not need the network (CI, air-gapped machines).

html_theme = "pydata_sphinx_theme"
html_title = f"bayescale {release}"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
    "navbar_align": "left",
    "footer_start": ["copyright"],
}
html_static_path: list[str] = []
