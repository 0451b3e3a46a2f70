"""A `--lambda` group gets a directory no other run has, and an unwritable `--out` is one line
before the model loads (issue 21: the second of two groups started in the same second was
refused, and an unwritable group `--out` was a traceback)."""

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from sae_kit.cli import app
from sae_kit.errors import SaeKitError
from tests.helpers import FAST, one_line_error

runner = CliRunner()
pytestmark = pytest.mark.integration  # the CLI and whole runs

RUNS = {"group": ["--lambda", "0.5,1"], "lone": ["--lambda", "2"]}


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("order", [("group", "group"), ("lone", "group"), ("group", "lone")])
def test_runs_and_groups_started_in_the_same_second_get_their_own_directories(
        tiny_gpt2, tmp_path, monkeypatch, order):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("time.strftime", lambda fmt, *a: "20261202-120000")  # one second
    results = [runner.invoke(app, ["train", "--model", str(tiny_gpt2), *FAST, *RUNS[kind]])
               for kind in order]
    assert all(r.exit_code == 0 for r in results), [r.output for r in results]
    first, second = (Path(r.stdout.strip().splitlines()[-1]) for r in results)
    assert second.name == first.name + "-2"
    for path, kind in zip((first, second), order, strict=True):
        if kind == "group":
            members = json.loads((path / "group.json").read_text())["members"]
            assert members == ["lambda0.5", "lambda1"]
            coeffs = [json.loads((path / m / "config.json").read_text())["sparsity_coeff"]
                      for m in members]
            assert coeffs == [0.5, 1.0]
        else:
            assert json.loads((path / "config.json").read_text())["sparsity_coeff"] == 2.0


def _unwritable(tmp_path: Path, where: str) -> Path:
    if where == "/proc":
        return Path("/proc/sae-kit-test/group")
    (tmp_path / "file").write_text("x")
    return tmp_path / "file" / "group"


@pytest.mark.parametrize("where", ["under a file", "/proc"])
def test_an_unwritable_group_out_is_one_line_before_the_model_loads(tmp_path, where):
    out = _unwritable(tmp_path, where)
    missing_model = tmp_path / "no-model"  # a check after loading would name this instead
    result = runner.invoke(app, ["train", "--model", str(missing_model), "--out", str(out),
                                 *FAST, "--lambda", "0.5,1"])
    one_line_error(result, f"cannot write the run directory {str(out)!r}", "choose a writable")


def test_the_python_api_says_the_same_for_a_group(tmp_path):
    from sae_kit import TrainConfig, train_saes

    out = _unwritable(tmp_path, "under a file")
    config = TrainConfig(model=str(tmp_path / "no-model"), dataset="pydoc", output_dir=str(out))
    with pytest.raises(SaeKitError, match="cannot write the run directory"):
        train_saes(config, lambdas=[0.5, 1])


def test_a_group_that_fails_to_start_leaves_no_directory_behind(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["train", "--model", str(tmp_path / "no-model"), *FAST,
                                 "--lambda", "0.5,1"])
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    runs = tmp_path / "runs"
    assert not runs.exists() or not any(runs.iterdir())  # a claimed group directory is removed
