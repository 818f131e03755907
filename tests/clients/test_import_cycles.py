"""No import circle among bayescale's modules and its console entry, function-level imports included.

import-linter's contracts (pyproject.toml) check the layers and the modules of each folder, but
its ``acyclic_siblings`` contract sees neither a circle through the console entry outside the
package (``_bayescale_cli``) nor one through imports under ``TYPE_CHECKING`` (excluded for the
whole run by ``exclude_type_checking_imports``). This test reads every module's syntax tree and
follows every import statement: module level, inside functions, and under ``TYPE_CHECKING``.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _modules(root: Path) -> dict[str, Path]:
    """Every module of the bayescale package and the console entry's modules beside it, by name."""
    found = {}
    for path in sorted((root / "bayescale").rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    for path in sorted(root.glob("_bayescale*.py")):
        found[path.stem] = path
    return found


def _imported(name: str, path: Path, known: Iterable[str]) -> set[str]:
    """The known modules ``name`` imports anywhere in its file.

    ``from package import submodule`` imports the submodule, as import-linter counts it: a
    package's ``__init__`` that re-exports its own modules is not a circle.
    """
    known = set(known)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, *([node.module] if node.module else [])])
            submodules = {f"{base}.{alias.name}" for alias in node.names} & known
            targets |= submodules
            if len(submodules) < len(node.names):
                targets.add(base)
    out = set()
    for target in targets:
        while target and target not in known:  # a name inside a module: the module
            target = target.rpartition(".")[0]
        if target and target != name:
            out.add(target)
    return out


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the modules it imports, among bayescale's and the console entry's."""
    modules = _modules(root)
    return {name: _imported(name, path, modules) for name, path in modules.items()}


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            for succ in successors:
                if succ not in index:
                    index[succ] = low[succ] = len(index)
                    stack.append(succ)
                    on_stack.add(succ)
                    work.append((succ, iter(sorted(graph[succ]))))
                    break
                if succ in on_stack:
                    low[node] = min(low[node], index[succ])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def test_the_finder_sees_a_circle_through_a_function_level_import(tmp_path):
    """The check can fail: a circle closed by an import inside a function or under TYPE_CHECKING."""
    package = tmp_path / "bayescale"
    (package / "cli").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "cli" / "__init__.py").write_text("from bayescale.cli import entry\n")
    (package / "cli" / "entry.py").write_text("def run():\n    from bayescale.cli.many import go\n")
    (package / "cli" / "many.py").write_text("def go():\n    from _bayescale_cli import hide\n")
    (package / "plan.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .fit import Fit\n"
    )
    (package / "fit.py").write_text("from bayescale import plan\n")
    (tmp_path / "_bayescale_cli.py").write_text("def main():\n    from bayescale.cli import entry\n")
    assert circles(import_graph(tmp_path)) == [
        ["_bayescale_cli", "bayescale.cli.entry", "bayescale.cli.many"],
        ["bayescale.fit", "bayescale.plan"],
    ]


def test_no_module_imports_itself_through_others():
    graph = import_graph(ROOT)
    assert "bayescale.inference.sampling" in graph and "_bayescale_cli" in graph
    assert circles(graph) == []
