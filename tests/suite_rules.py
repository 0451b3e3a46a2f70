"""Which tests are integration tests, read from the test files' source.

A test is one when its body (or a helper or fixture of its file or conftest.py it uses, at any
depth) runs the CLI (``invoke``, Typer's CliRunner; ``cli_train``/``hub_cli`` of
tests/helpers.py), a subprocess, or a whole training or evaluation run (``fit``, ``train_saes``,
``resume``, ``evaluate_run``), as torchtune keeps its recipe tests apart. Such tests are marked
``integration`` (or ``slow``); every other test is marked ``unit`` at collection
(:func:`mark_units`), so ``pytest -m unit`` is the fast inner loop.
tests/project/test_suite_layout.py holds every test file to that.
"""

from __future__ import annotations

import ast
from collections.abc import Sequence
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent
PRIMITIVES = {"invoke", "cli_train", "hub_cli", "fit", "train_saes", "resume", "evaluate_run"}
"""Calls that run the CLI (CliRunner.invoke and the helpers around it) or a whole run."""
SUBPROCESS = {"subprocess", "Popen", "check_output", "check_call"}
FunctionNode = ast.FunctionDef | ast.AsyncFunctionDef


def _called(node: ast.AST) -> set[str]:
    """Names of what a function calls or reads: ``f(...)``, ``x.f(...)``, ``subprocess.run``."""
    names: set[str] = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Call):
            func = sub.func
            if isinstance(func, ast.Name):
                names.add(func.id)
            elif isinstance(func, ast.Attribute):
                names.add(func.attr)
                if isinstance(func.value, ast.Name):
                    names.add(func.value.id)
    return names


def _functions(tree: ast.Module) -> dict[str, FunctionNode]:
    return {n.name: n for n in tree.body if isinstance(n, FunctionNode)}


def _params(fn: FunctionNode) -> set[str]:
    return {a.arg for a in fn.args.args + fn.args.kwonlyargs}


def cli_functions(*trees: ast.Module) -> set[str]:
    """The module-level functions (helpers, fixtures, tests) that run the CLI, a process or a
    whole run."""
    functions: dict[str, FunctionNode] = {}
    for tree in trees:
        functions.update(_functions(tree))
    uses = {name: (_called(fn) | _params(fn)) for name, fn in functions.items()}
    found = {name for name, used in uses.items() if used & (PRIMITIVES | SUBPROCESS)}
    grew = True
    while grew:  # helpers calling helpers, fixtures taking fixtures
        more = {name for name, used in uses.items() if used & found} - found
        found |= more
        grew = bool(more)
    return found


def _marks(decorators: list[ast.expr]) -> set[str]:
    """``pytest.mark.NAME`` names among decorators (or a pytestmark value)."""
    marks = set()
    for d in decorators:
        for sub in ast.walk(d):
            if isinstance(sub, ast.Attribute) and isinstance(sub.value, ast.Attribute) \
                    and sub.value.attr == "mark":
                marks.add(sub.attr)
    return marks


def module_marks(tree: ast.Module) -> set[str]:
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "pytestmark" for t in node.targets):
            return _marks([node.value])
    return set()


def unmarked_cli_tests(path: Path) -> list[str]:
    """Tests of ``path`` that are integration tests but are marked neither way."""
    tree = ast.parse(path.read_text())
    conftest = ast.parse((TESTS / "conftest.py").read_text())
    helpers = ast.parse((TESTS / "helpers.py").read_text())
    running = cli_functions(tree, conftest, helpers)
    file_marks = module_marks(tree)
    return [f"{path.name}::{name}" for name, fn in _functions(tree).items()
            if name.startswith("test_") and name in running
            and not ({"integration", "slow"} & (file_marks | _marks(fn.decorator_list)))]


def mark_units(items: Sequence[pytest.Item]) -> None:
    """Mark ``unit`` every collected test that is neither ``slow`` nor ``integration``."""
    for item in items:
        if item.get_closest_marker("slow") is None \
                and item.get_closest_marker("integration") is None:
            item.add_marker(pytest.mark.unit)
