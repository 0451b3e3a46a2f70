"""An unwritable `--out` of `features`, `compare` and `importance` is one line before the model
loads (issue 21: a traceback after the pass; fixed before for `train` and `eval` only)."""

from pathlib import Path

import pytest
from typer.testing import CliRunner

from sae_kit.cli import app
from tests.helpers import SAVE_EVERY_STEP, cli_train, one_line_error

runner = CliRunner()
pytestmark = pytest.mark.integration  # the CLI and whole runs

COMMANDS = {
    "features": (["features", "RUN"], "sae_kit.eval.feature_report.load_model",
                 "feature report"),
    "compare": (["compare", "RUN", "RUN"], "sae_kit.eval.analysis.compare.load_model",
                "comparison"),
    "importance": (["importance", "RUN"], "sae_kit.model.loading.load_model",
                   "importance results"),
}


@pytest.fixture(scope="module")
def trained(tiny_gpt2, tmp_path_factory):
    run = tmp_path_factory.mktemp("trained") / "run"
    assert cli_train(tiny_gpt2, run, "--loss", "local", base=SAVE_EVERY_STEP).exit_code == 0
    return run


def _out(tmp_path: Path, where: str) -> tuple[Path, str]:
    if where == "/proc":
        return Path("/proc/sae-kit-test/out"), "cannot write the"
    (tmp_path / "file").write_text("x")
    if where == "under a file":
        return tmp_path / "file" / "out", "cannot write the"
    return tmp_path / "file", "is a file; choose a directory"


def _model_never_loads(*args, **kwargs):
    raise AssertionError("the model was loaded before --out was checked")


@pytest.mark.parametrize("where", ["under a file", "/proc", "a file"])
@pytest.mark.parametrize("command", COMMANDS)
def test_an_unwritable_out_is_one_line_before_the_model_loads(trained, tmp_path, monkeypatch,
                                                             command, where):
    args, loader, what = COMMANDS[command]
    monkeypatch.setattr(loader, _model_never_loads)
    out, needle = _out(tmp_path, where)
    if command == "importance":  # it writes OUT/importance-HOOK_POINT: under a file too
        needle = "cannot write the"
    args = [str(trained) if a == "RUN" else a for a in args]
    result = runner.invoke(app, [*args, "--out", str(out), "--tokens", "64", "--device", "cpu"])
    line = one_line_error(result, needle, what)
    assert str(out) in line
    if where != "/proc":
        assert (tmp_path / "file").read_text() == "x"  # nothing of the user's was touched
