"""The suite's own rules: test files laid out like sae_kit's packages; shared code in helpers,
not imported across test files; slow, integration and unit markers (`pytest -m unit` is the fast
loop, plain `pytest` runs all)."""

import ast

import pytest

from tests.suite_rules import TESTS

NOT_PACKAGES = {
    "core": "sae_kit's top-level modules (data, errors, progress, network)",
    "plugins": "the plugin kernel (sae_kit/plugins.py) and the distributions in plugins/",
    "project": "rules of the repository as a whole: imports, layout, docs, this suite",
}
"""Test folders that are not named after a package of sae_kit, and what they hold."""


def test_tests_are_laid_out_like_the_packages():
    package = TESTS.parent / "sae_kit"
    top = sorted(p.name for p in TESTS.glob("test_*.py"))
    assert not top, f"put these in the folder of the package they test: {top}"
    for folder in sorted(p for p in TESTS.iterdir() if p.is_dir() and p.name != "__pycache__"):
        assert (package / folder.name / "__init__.py").is_file() or folder.name in NOT_PACKAGES, (
            f"tests/{folder.name}/ is named after no package of sae_kit")
        # a package each, so two folders may hold files of one name
        assert (folder / "__init__.py").is_file(), f"tests/{folder.name}/ lacks __init__.py"
        assert list(folder.glob("test_*.py")), f"tests/{folder.name}/ holds no tests"
HELPERS = {"tests.helpers", "tests.tiny_models", "tests.fake_hub", "tests.fake_llm",
           "tests.oracles", "tests.suite_rules"}


def test_test_files_import_helpers_not_each_other():
    crossed = []
    for path in sorted(TESTS.rglob("*.py")):
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
    for name in ("train/test_resume.py", "train/test_distributed.py", "store/test_hub.py"):
        assert "pytestmark = pytest.mark.slow" in (TESTS / name).read_text(), name


def test_tests_that_run_the_cli_or_a_subprocess_are_marked():
    from tests.suite_rules import unmarked_cli_tests

    unmarked = [t for path in sorted(TESTS.rglob("test_*.py")) for t in unmarked_cli_tests(path)]
    assert not unmarked, f"mark these @pytest.mark.integration (or slow): {unmarked}"


def test_the_rule_sees_a_cli_call_through_a_helper_and_a_fixture(tmp_path, monkeypatch):
    import tests.suite_rules as rules

    (tmp_path / "conftest.py").write_text(
        "import pytest\n@pytest.fixture\ndef trained(tmp_path):\n    return cli_train(1, 2)\n")
    (tmp_path / "helpers.py").write_text("")
    (tmp_path / "test_x.py").write_text(
        "import pytest\n"
        "def _run():\n    return runner.invoke(app, [])\n"
        "def test_helper():\n    _run()\n"
        "def test_fixture(trained):\n    pass\n"
        "@pytest.mark.integration\ndef test_marked():\n    _run()\n"
        "def test_unit():\n    assert 1\n")
    monkeypatch.setattr(rules, "TESTS", tmp_path)
    assert rules.unmarked_cli_tests(tmp_path / "test_x.py") == [
        "test_x.py::test_helper", "test_x.py::test_fixture"]


def test_the_unit_marker_is_every_test_neither_slow_nor_integration():
    from tests.suite_rules import mark_units

    class Item:
        def __init__(self, *marks: str) -> None:
            self.marks = set(marks)

        def get_closest_marker(self, name: str) -> str | None:
            return name if name in self.marks else None

        def add_marker(self, mark: pytest.MarkDecorator) -> None:
            self.marks.add(mark.name)

    items = [Item(), Item("slow"), Item("integration"), Item("slow", "integration")]
    mark_units(items)
    assert [sorted(i.marks) for i in items] == [
        ["unit"], ["slow"], ["integration"], ["integration", "slow"]]


def test_plain_pytest_runs_everything_and_the_unit_loop_is_documented():
    pyproject = (TESTS.parent / "pyproject.toml").read_text()
    for name in ("slow", "integration", "unit"):
        assert f'"{name}: ' in pyproject, name
    assert "-m " not in pyproject.split("addopts = ")[1].splitlines()[0]  # nothing deselected
    readme = (TESTS.parent / "README.md").read_text()
    assert "ruff check . && python -m pytest -q\n" in readme  # what .ci/run runs: everything
    assert "python -m pytest -q\n" in (TESTS.parent / ".ci" / "run").read_text()
    assert "python -m pytest -q -m unit" in readme
