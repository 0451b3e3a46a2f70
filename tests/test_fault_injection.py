"""Fault injection, part 2 (issue 14): bad inputs are one `error:` line, faults lose nothing.

Each test names the numbered case of issue 14 it covers. The kills and signals of part 1 are in
test_faults.py, test_resume.py and test_checkpoint.py; a misbehaving Hub is in
test_hub_faults.py. docs/reliability.md lists every case with its test.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from sae_kit.cli import app
from sae_kit.store import sae_dir
from tests.test_faults import SAE, TINY, _train

runner = CliRunner()


def one_line_error(result, *needles: str) -> str:
    """The result is exit code 2 with exactly one `error: ...` line (and no traceback)."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    text = result.stderr.strip()
    assert len(text.splitlines()) == 1 and text.startswith("error: "), text
    flat = " ".join(text.split())
    for needle in needles:
        assert needle in flat, flat
    return flat


@pytest.fixture(scope="module")
def trained(tiny_gpt2, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("fi") / "run"
    assert _train(tiny_gpt2, out, "--save-every", "2").exit_code == 0  # checkpoints 2 and 3
    return out


@pytest.fixture
def run(trained, tmp_path) -> Path:
    return Path(shutil.copytree(trained, tmp_path / "run"))


# --- 4: a torn metrics row ------------------------------------------------------------------

def test_4_a_metrics_log_cut_mid_row_is_repaired_on_resume(run):
    shutil.rmtree(run / "checkpoints" / "step-000003")  # resume from step 2
    metrics = run / "metrics.jsonl"
    rows = metrics.read_text().splitlines()
    os.truncate(metrics, len(rows[0]) + 1 + len(rows[1]) // 2)  # the tail of the file is lost
    result = runner.invoke(app, ["train", "--resume", str(run)])
    assert result.exit_code == 0, result.output
    assert "ended in a half-written row" in " ".join(result.stderr.split())
    after = [json.loads(line) for line in metrics.read_text().splitlines()]  # all readable
    assert [row["step"] for row in after] == [1, 3]


# --- 5: one line for every bad input --------------------------------------------------------

@pytest.mark.parametrize(("name", "content", "needle"), [
    ("bad.jsonl", b'{"text": "a"}\n{"text": "cut off\n', "could not read dataset"),
    ("bad.txt", b"caf\xe9 \xff\xfe not utf-8\n" * 50, "UnicodeDecodeError"),
    ("list.jsonl", b"[1, 2]\n", "not text"),
])
def test_5_a_malformed_dataset_is_one_line(tiny_gpt2, tmp_path, name, content, needle):
    data = tmp_path / name
    data.write_bytes(content)
    result = _train(tiny_gpt2, tmp_path / "r", "--dataset", str(data))
    one_line_error(result, needle)


def _model_copy(src: Path, dst: Path) -> Path:
    return Path(shutil.copytree(src, dst))


def test_5_a_model_directory_without_config_is_one_line(tiny_gpt2, tmp_path):
    model = _model_copy(tiny_gpt2, tmp_path / "m")
    (model / "config.json").unlink()
    result = _train(model, tmp_path / "r")
    one_line_error(result, "is not a model directory (no config.json)")


def test_5_a_model_with_only_pickled_weights_is_refused_in_one_line(tiny_gpt2, tmp_path):
    model = _model_copy(tiny_gpt2, tmp_path / "m")
    weights = model / "model.safetensors"
    torch.save(load_file(str(weights)), model / "pytorch_model.bin")
    weights.unlink()
    result = _train(model, tmp_path / "r")
    one_line_error(result, "only as a pickle file", "unpickling can run code")


@pytest.mark.parametrize(("device", "needle"), [("meta", "--device meta holds no data"),
                                                ("mps", "'mps' is not available"),
                                                ("cuda:7", "cuda")])
def test_5_an_absent_device_is_one_line(tiny_gpt2, tmp_path, device, needle):
    args = [a for a in TINY if a not in ("--device", "cpu")]
    result = runner.invoke(app, ["train", "--model", str(tiny_gpt2), "--out",
                                 str(tmp_path / "r"), *args, "--device", device])
    one_line_error(result, needle)


def _sae_config(run: Path) -> Path:
    return run / SAE / "config.json"


@pytest.mark.parametrize(("edit", "needle"), [
    (lambda c: [c], "but a JSON list"),
    (lambda c: {**c, "n_dict": 10**12}, "tensor shapes differ"),
    (lambda c: {**c, "n_dict": 2**31 - 1}, "tensor shapes differ"),
    (lambda c: {**c, "n_dict": "64"}, "want a positive whole number"),
    (lambda c: {**c, "d_in": -1}, "want a positive whole number"),
    (lambda c: {**c, "options": {"bogus": 1}}, "unknown option 'bogus'"),
])
def test_5_a_hostile_sae_config_is_one_line_before_any_allocation(run, edit, needle):
    path = _sae_config(run)
    path.write_text(json.dumps(edit(json.loads(path.read_text()))))
    result = runner.invoke(app, ["export", str(run / SAE), str(run.parent / "x")])
    one_line_error(result, needle)


def test_5_eval_of_a_read_only_run_is_one_line_before_evaluating(run, monkeypatch):
    # The tests run as root, who may write anywhere: the run is read-only as os.access says.
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: (
        False if mode & os.W_OK and str(p).startswith(str(run)) else real(p, mode, **kw)))
    result = runner.invoke(app, ["eval", str(run), "--n-tokens", "32", "--device", "cpu"])
    one_line_error(result, f"cannot write {str(run / 'eval.json')!r}", "copy the run")
    assert not (run / "eval.json").exists()


def test_5_a_failed_eval_write_is_one_line(run, monkeypatch):
    from sae_kit.eval import evaluation

    def fail(path, data):
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(evaluation, "write_json_atomic", fail)
    result = runner.invoke(app, ["eval", str(run), "--n-tokens", "32", "--device", "cpu"])
    one_line_error(result, "Read-only file system")


def test_5_a_plot_into_a_missing_directory_is_one_line_before_evaluating(run, tmp_path):
    result = runner.invoke(app, ["eval", str(run), "--n-tokens", "32", "--device", "cpu",
                                 "--plot", str(tmp_path / "no" / "such" / "p.png")])
    one_line_error(result, "is not a directory; create it first")
    assert not (run / "eval.json").exists()


# --- 7: export never writes into a non-empty directory ---------------------------------------

@pytest.mark.parametrize("what", ["run", "sae"])
def test_7_export_refuses_a_non_empty_directory(run, tmp_path, what):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    source = run if what == "run" else run / SAE
    result = runner.invoke(app, ["export", str(source), str(out)])
    one_line_error(result, "already exists and is not empty")
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]


# --- 8: temporary files and the umask ---------------------------------------------------------

def test_8_an_interrupted_sae_write_leaves_no_temporary_file(run, monkeypatch):
    sae, config = sae_dir.load_sae(run / SAE)
    from sae_kit.model.hookpoints import HookPoint

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # as a signal arriving mid-write

    monkeypatch.setattr("safetensors.torch.save_file", killed)
    with pytest.raises(KeyboardInterrupt):
        sae_dir.save_sae(sae, HookPoint.parse(SAE), run / SAE, {})
    assert not list((run / SAE).glob(".*"))


def test_8_temporary_files_of_a_killed_write_are_swept_by_the_next(run):
    stale = run / SAE / ".sae.safetensors.abc123"
    stale.write_bytes(b"half")  # what kill -9 during the final write leaves
    sae, _ = sae_dir.load_sae(run / SAE)
    from sae_kit.model.hookpoints import HookPoint

    sae_dir.save_sae(sae, HookPoint.parse(SAE), run / SAE, {})
    assert not stale.exists()


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_8_run_files_follow_the_umask(tiny_gpt2, tmp_path, umask):
    old = os.umask(umask)
    try:
        out = tmp_path / "r"
        assert _train(tiny_gpt2, out).exit_code == 0
    finally:
        os.umask(old)
    paths = [p for p in out.rglob("*")]
    assert paths
    for path in paths:
        mode = stat.S_IMODE(path.stat().st_mode)
        want = (0o777 if path.is_dir() else 0o666) & ~umask
        assert mode == want, (path, oct(mode), oct(want))


# --- 10: messages that say what is really wrong -----------------------------------------------

def test_10_offline_model_load_says_offline(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "home"))
    result = runner.invoke(app, ["train", "--model", "alice/not-cached", *TINY])
    message = one_line_error(result, "HF_HUB_OFFLINE is set")
    assert "wrong id" not in message


def test_10_a_mistyped_local_path_is_not_taken_for_a_hub_id(tmp_path, monkeypatch):
    (tmp_path / "runs").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # a Hub lookup would say "no network"
    result = runner.invoke(app, ["train", "--model", "runs/typo", *TINY])
    one_line_error(result, "model directory 'runs/typo' does not exist")
    result = runner.invoke(app, ["eval", "runs/typo"])
    one_line_error(result, "'runs/typo' does not exist")
