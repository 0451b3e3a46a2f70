"""The suite's own rules: shared code in helpers, not imported across test files; a slow marker."""

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parent
HELPERS = {"tests.helpers", "tests.tiny_models", "tests.fake_hub", "tests.fake_llm",
           "tests.oracles"}


def test_test_files_import_helpers_not_each_other():
    crossed = []
    for path in sorted(TESTS.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else (
                [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            crossed += [f"{path.name}: {n}" for n in names
                        if n.startswith("tests.") and n not in HELPERS]
    assert not crossed, crossed


def test_the_slow_marker_is_registered_and_used():
    pyproject = (TESTS.parent / "pyproject.toml").read_text()  # tomllib needs Python 3.11
    assert '"slow: ' in pyproject
    assert "--strict-markers" in pyproject  # a misspelt marker is an error
    for name in ("test_resume.py", "test_distributed.py", "test_hub.py"):
        assert "pytestmark = pytest.mark.slow" in (TESTS / name).read_text(), name
