"""The documentation site covers the public API: every name of ``bayescale.__all__`` has its own
docstring and a page in the API reference (docs/api/index.md); the user guides join by a glob.

The site itself is built by ``make docs`` (Sphinx, warnings as errors) in CI, not here.
"""

import inspect
import re
from pathlib import Path

import pytest

import bayescale as bs

DOCS = Path(__file__).resolve().parents[2] / "docs"
API = DOCS / "api" / "index.md"

#: Public names that are data, not code: no docstring of their own; the API page describes them.
DATA = {"__version__"}


def api_page_names() -> list[str]:
    """The names the API page's autosummary blocks list (each gets a page of its own)."""
    names = []
    for block in re.findall(r"\.\. autosummary::\n((?:   .*\n|\n)*)", API.read_text()):
        names += [
            line.strip() for line in block.splitlines() if line.strip() and not line.strip().startswith(":")
        ]
    return names


def own_docstring(obj) -> str | None:
    """The docstring ``obj`` defines itself (a class's, not one inherited from ``object`` or a base)."""
    if inspect.isclass(obj):
        return obj.__dict__.get("__doc__")
    if inspect.ismodule(obj) or callable(obj):
        return obj.__doc__
    return None  # a constant: documented by a ``#:`` comment where it is defined


@pytest.mark.parametrize("name", sorted(set(bs.__all__) - DATA))
def test_every_public_name_has_a_docstring_and_an_api_page(name):
    obj = getattr(bs, name)
    listed = api_page_names()
    assert name in listed, (
        f"bayescale.{name} has no page in docs/api/index.md: add it to an autosummary block"
    )
    assert listed.count(name) == 1, (
        f"bayescale.{name} is listed {listed.count(name)} times in docs/api/index.md"
    )
    if inspect.isclass(obj) or inspect.ismodule(obj) or callable(obj):
        doc = own_docstring(obj)
        assert doc and doc.strip(), f"bayescale.{name} has no docstring of its own"
    else:  # data: where it is defined, a #: comment says what it is (autodoc shows it)
        assert documented_constant(name), f"bayescale.{name} is defined without a '#:' comment above it"


def documented_constant(name: str) -> bool:
    """Whether a module of the package assigns ``name`` right under a ``#:`` comment."""
    package = Path(bs.__file__).parent
    pattern = re.compile(rf"^#:.*\n(?:#:.*\n)*{re.escape(name)}\s*[:=]", re.MULTILINE)
    return any(pattern.search(path.read_text()) for path in package.rglob("*.py"))


def test_the_api_page_lists_only_public_names():
    stray = [name for name in api_page_names() if name not in bs.__all__]
    assert not stray, f"docs/api/index.md lists names not in bayescale.__all__: {stray}"


def test_the_guides_join_by_a_glob_and_every_page_has_a_title():
    index = (DOCS / "index.md").read_text()
    assert re.search(r":glob:\n(?:.*\n)*?guides/\*", index), (
        "the guides toctree must include guides/* by a glob"
    )
    for page in sorted((DOCS / "guides").glob("*.md")):
        assert page.read_text().startswith("# "), f"{page.name} must start with a '# Title' line"
