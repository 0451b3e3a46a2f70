"""sae_kit's import graph: no circle, and each package imports only what its docstring allows.

Every package ``__init__`` says what it may import and what it may ``never`` import; this test
reads those rules from the docstrings and holds the code to them. Imports under
``if TYPE_CHECKING:`` are left out (they never run); imports inside functions count like any
other, for the direction rules and for circles: a lazy import is still a dependency, and a data
module that imports its view inside a function is still a circle.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import sae_kit

ROOT = Path(sae_kit.__file__).parent
PACKAGES = sorted(p.parent.name for p in ROOT.glob("*/__init__.py"))


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in ROOT.rglob("*.py")}


def _target(module: str, name: str | None) -> str:
    """The sae_kit module an import names: ``from pkg import sub`` is the submodule if any."""
    if name and f"{module}.{name}" in MODULES:
        return f"{module}.{name}"
    return module


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.AST, top_level: bool) -> set[str]:
    """sae_kit modules imported, at module level only or anywhere (TYPE_CHECKING left out)."""
    found: set[str] = set()

    def visit(node: ast.AST, depth: int) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child, depth)
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "sae_kit")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "sae_kit":
            found.update(_target(node.module, a.name) for a in node.names)
        inner = isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        if inner and top_level:
            return
        for child in ast.iter_child_nodes(node):
            visit(child, depth + inner)

    visit(tree, 0)
    return found


def _graph(top_level: bool) -> dict[str, set[str]]:
    return {name: _imports(ast.parse(path.read_text()), top_level) - {name}
            for name, path in MODULES.items()}


def _package(module: str) -> str:
    """The subpackage a module belongs to, or "kernel" for the top-level modules."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in PACKAGES else "kernel"


def _never(package: str) -> set[str]:
    """The packages named after "never" in a package's docstring."""
    doc = ast.get_docstring(ast.parse((ROOT / package / "__init__.py").read_text())) or ""
    rules = re.findall(r"\bnever\b([^.;]*)", doc)
    return {name for rule in rules for name in re.findall(r"``(\w+)``", rule)}


CIRCLES_ALLOWED: set[tuple[str, str]] = set()
"""Arrows (importer, imported) a circle may take; empty: there is none, lazy imports included."""


def _circle(graph: dict[str, set[str]]) -> list[str] | None:
    done: set[str] = set()

    def walk(module: str, path: list[str]) -> list[str] | None:
        if module in path:
            return [*path[path.index(module):], module]
        if module in done:
            return None
        for nxt in sorted(graph.get(module, ())):
            if (module, nxt) not in CIRCLES_ALLOWED and (found := walk(nxt, [*path, module])):
                return found
        done.add(module)
        return None

    return next((c for module in sorted(graph) if (c := walk(module, []))), None)


def test_there_is_no_import_circle_at_module_level():
    circle = _circle(_graph(top_level=True))
    assert circle is None, "import circle: " + " -> ".join(circle or [])


def test_there_is_no_import_circle_counting_imports_inside_functions():
    circle = _circle(_graph(top_level=False))
    assert circle is None, "import circle: " + " -> ".join(circle or [])


def test_a_lazy_import_that_closes_a_circle_is_found():
    # The test above could pass by not looking: a data module importing its view inside a
    # function, as eval/analysis/features.py once did with eval/report/render.py.
    graph = {"data": {"view"}, "view": {"data"}, "cli": {"data"}}
    assert _circle(graph) == ["data", "view", "data"]
    assert _circle({"data": set(), "view": {"data"}, "cli": {"data", "view"}}) is None


def test_packages_import_only_what_their_docstrings_allow():
    graph = _graph(top_level=False)
    broken = []
    for package in PACKAGES:
        forbidden = _never(package)
        for module, targets in graph.items():
            if _package(module) != package:
                continue
            broken += [f"{module} imports {t}" for t in targets if _package(t) in forbidden]
    assert not broken, broken


def test_the_rules_are_stated():
    # What issue 11 fixed: lower layers never reach up into training or the command line.
    assert {"train", "cli"} <= _never("model") & _never("eval") & _never("store")
    assert "eval" in _never("store") and "eval" in _never("train")
    assert {"train", "eval", "store", "cli"} <= _never("losses")
    assert {"model", "losses", "train", "eval", "store", "cli"} <= _never("architectures")
    # What issue 19 added: the run record sits below everything that reads a run.
    assert {"model", "train", "eval", "store", "sweep", "cli"} <= _never("record")


def test_kernel_modules_import_no_package_at_module_level():
    graph = _graph(top_level=True)
    for module, targets in graph.items():
        if _package(module) == "kernel" and module != "sae_kit.__main__":
            assert all(_package(t) == "kernel" for t in targets), (module, targets)


def test_the_top_level_stays_small():
    # Everything else belongs in a package; the top level is the kernel every package may use.
    # Nine: `version` is one line on its own so that recorders need not import the package.
    # Ten: `progress` is the callback shape train, eval, sweep and cli all report through.
    modules = sorted(p.stem for p in ROOT.glob("*.py") if p.stem not in ("__init__", "__main__"))
    assert len(modules) <= 10, modules
