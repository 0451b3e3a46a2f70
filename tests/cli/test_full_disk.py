"""A full disk outside the checkpoint write is one `error:` line that says how to go on, and
leaves no half-written output (issue 21: tracebacks from the `metrics.jsonl` append, the final
`sae.safetensors`, `features` and `compare`; `features` left half a report). The disk fills
where each command writes: at the file's open, inside safetensors (which wraps the OS error in
its own type), and for real under a file-size limit (`ulimit -f`) in a subprocess."""

import errno
import json
import os
import resource
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors import SafetensorError
from typer.testing import CliRunner

from sae_kit.cli import app
from tests.helpers import SAE_AT_1, SAVE_EVERY_STEP, cli_train, one_line_error

runner = CliRunner()
pytestmark = pytest.mark.integration  # the CLI and whole runs
NO_SPACE = "No space left on device"


def _fill_disk_at(monkeypatch, name: str, after: int = 0) -> None:
    """Opening ``name`` for writing fails with ENOSPC once it has been opened ``after`` times."""
    real_open = Path.open
    opened = []

    def open_(self, mode="r", *args, **kwargs):
        if self.name == name and any(c in mode for c in "wax"):
            opened.append(self)
            if len(opened) > after:
                raise OSError(errno.ENOSPC, NO_SPACE)
        return real_open(self, mode, *args, **kwargs)

    monkeypatch.setattr(Path, "open", open_)


def _fill_disk_in_safetensors(monkeypatch, suffix: str) -> None:
    """safetensors' save_file fails as it does on a full disk, for files named ``*suffix*``."""
    import safetensors.torch

    real = safetensors.torch.save_file

    def save_file(tensors, filename, *args, **kwargs):
        if suffix in Path(filename).name:
            raise SafetensorError("Error while serializing: I/O error: No space left on device "
                                  "(os error 28)")
        return real(tensors, filename, *args, **kwargs)

    monkeypatch.setattr(safetensors.torch, "save_file", save_file)


@pytest.fixture(scope="module")
def trained(tiny_gpt2, tmp_path_factory):
    run = tmp_path_factory.mktemp("trained") / "run"
    assert cli_train(tiny_gpt2, run, "--loss", "local", base=SAVE_EVERY_STEP).exit_code == 0
    return run


# --- train ------------------------------------------------------------------------------------

@pytest.mark.parametrize("after", [1, 2], ids=["second row", "third row"])
def test_a_full_disk_at_the_metrics_append_is_one_line_and_resumes(tiny_gpt2, tmp_path,
                                                                   monkeypatch, after):
    run = tmp_path / "run"
    _fill_disk_at(monkeypatch, "metrics.jsonl", after)
    result = cli_train(tiny_gpt2, run, base=SAVE_EVERY_STEP)
    one_line_error(result, f"could not write {str(run / 'metrics.jsonl')!r} ({NO_SPACE})",
                   f"continue with `sae-kit train --resume {run}`")
    monkeypatch.undo()  # space freed: the way out it names works
    resumed = runner.invoke(app, ["train", "--resume", str(run)])
    assert resumed.exit_code == 0, resumed.output
    steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").open()]
    assert steps == [1, 2, 3]


def test_a_full_disk_before_the_first_checkpoint_says_to_start_again(tiny_gpt2, tmp_path,
                                                                    monkeypatch):
    run = tmp_path / "run"
    _fill_disk_at(monkeypatch, "metrics.jsonl")
    result = cli_train(tiny_gpt2, run, base=SAVE_EVERY_STEP)
    one_line_error(result, f"({NO_SPACE}); no checkpoint was written yet: free disk space, "
                   "then run the command again")
    monkeypatch.undo()
    assert cli_train(tiny_gpt2, run, base=SAVE_EVERY_STEP).exit_code == 0


def test_a_full_disk_at_the_final_sae_write_is_one_line_and_resume_writes_it(
        tiny_gpt2, tmp_path, monkeypatch):
    run = tmp_path / "run"
    _fill_disk_in_safetensors(monkeypatch, ".sae.safetensors.")
    result = cli_train(tiny_gpt2, run, base=SAVE_EVERY_STEP)
    one_line_error(result, f"could not write {str(run / SAE_AT_1 / 'sae.safetensors')!r} "
                   f"({NO_SPACE})", "the checkpoints written are intact")
    assert not list((run / SAE_AT_1).glob(".*"))  # no temp file left
    monkeypatch.undo()
    resumed = runner.invoke(app, ["train", "--resume", str(run)])
    assert resumed.exit_code == 0 and "already trained" in resumed.output, resumed.output
    assert (run / SAE_AT_1 / "sae.safetensors").is_file()


def test_a_full_disk_in_a_group_names_the_group_to_resume(tiny_gpt2, tmp_path, monkeypatch):
    group = tmp_path / "group"
    _fill_disk_at(monkeypatch, "metrics.jsonl", after=3)
    result = cli_train(tiny_gpt2, group, "--lambda", "0.5,1", base=SAVE_EVERY_STEP)
    one_line_error(result, f"continue with `sae-kit train --resume {group}`")
    monkeypatch.undo()
    assert runner.invoke(app, ["train", "--resume", str(group)]).exit_code == 0


# --- features and compare ---------------------------------------------------------------------

FEATURES = ["--tokens", "64", "--device", "cpu", "--batch-size", "2"]


@pytest.mark.parametrize("name", ["features.jsonl", "summary.json", "index.html"])
def test_a_full_disk_while_writing_a_feature_report_leaves_none(trained, tmp_path,
                                                               monkeypatch, name):
    out = tmp_path / "report"
    _fill_disk_at(monkeypatch, name)
    result = runner.invoke(app, ["features", str(trained), "--out", str(out), *FEATURES])
    one_line_error(result, f"({NO_SPACE}); free disk space, then run the command again")
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no half report, no staging


def test_a_full_disk_keeps_the_previous_report_whole(trained, tmp_path, monkeypatch):
    out = tmp_path / "report"
    first = runner.invoke(app, ["features", str(trained), "--out", str(out), *FEATURES])
    assert first.exit_code == 0, first.output
    (out / "explanations.json").write_text("{}")  # what `sae-kit explain` adds: never replaced
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    _fill_disk_in_safetensors(monkeypatch, "features.safetensors")
    result = runner.invoke(app, ["features", str(trained), "--out", str(out), *FEATURES])
    one_line_error(result, NO_SPACE)
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before and [p.name for p in tmp_path.iterdir()] == ["report"]
    monkeypatch.undo()
    again = runner.invoke(app, ["features", str(trained), "--out", str(out), *FEATURES])
    assert again.exit_code == 0 and (out / "explanations.json").read_text() == "{}"


@pytest.mark.parametrize("where", ["maxcos.safetensors", "summary.json"])
def test_a_full_disk_while_comparing_leaves_no_half_comparison(trained, tmp_path,
                                                               monkeypatch, where):
    out = tmp_path / "cmp"
    if where == "summary.json":
        monkeypatch.setattr("sae_kit.eval.analysis.compare.write_json_atomic", _no_space)
    else:
        _fill_disk_in_safetensors(monkeypatch, where)
    result = runner.invoke(app, ["compare", str(trained), str(trained), "--out", str(out),
                                 "--tokens", "64", "--device", "cpu"])
    one_line_error(result, NO_SPACE)
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_while_writing_importance_leaves_no_half_results(trained, tmp_path,
                                                                     monkeypatch):
    out = tmp_path / "imp"
    _fill_disk_in_safetensors(monkeypatch, "importance.safetensors")
    result = runner.invoke(app, ["importance", str(trained), "--out", str(out), "--tokens", "64",
                                 "--device", "cpu"])
    one_line_error(result, NO_SPACE)
    assert list(out.iterdir()) == []  # no importance-HOOK_POINT, no staging directory


def _no_space(path, *args, **kwargs):
    raise OSError(errno.ENOSPC, NO_SPACE, str(path))


@pytest.mark.slow
def test_a_real_file_size_limit_during_features_is_one_line(trained, tmp_path):
    out = tmp_path / "report"

    def limited():  # ulimit -f: the kernel refuses writes past 4 KiB (EFBIG), as a full disk
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, "-m", "sae_kit", "features", str(trained), "--out",
                           str(out), *FEATURES], capture_output=True, text=True, env=env,
                          preexec_fn=limited, timeout=600)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "error: could not write" in proc.stderr and "(File too large)" in proc.stderr
    assert list(tmp_path.iterdir()) == []
