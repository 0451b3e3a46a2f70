"""Nothing lost: kill -9 or SIGTERM mid-run, then --resume, ends where an unbroken run ends.

The interrupted runs are real `python -m sae_kit train` subprocesses; the reference run and the
resumed runs go through the same CLI in-process.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from sae_kit.cli import app
from sae_kit.train import checkpoint
from tests.helpers import FIRST_PARTY

pytestmark = pytest.mark.slow  # resume runs whole trainings in subprocesses

runner = CliRunner()
SAE = "blocks.1.hook_resid_pre"
# 60 steps of 4 windows; one thread, as tiny matrices only lose to thread hand-offs.
TINY = ["--dataset", "pydoc", "--n-samples", "240", "--batch-size", "2", "--grad-accum", "2",
        "--context", "16", "--dict-ratio", "4", "--log-every", "1", "--device", "cpu",
        "--layer", "1",
        "--lr", "3e-3", "--seed", "5"]


@pytest.fixture(scope="module")
def reference(tiny_gpt2, tmp_path_factory):
    """The same run, never interrupted."""
    out = tmp_path_factory.mktemp("reference") / "run"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("SAE_KIT_PLUGINS", FIRST_PARTY)
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        result = runner.invoke(app, ["train", "--model", str(tiny_gpt2), "--out", str(out),
                                     *TINY])
        torch.set_num_threads(threads)
    assert result.exit_code == 0, result.output
    return out


def _start(model_dir: Path, out: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "sae_kit", "train", "--model", str(model_dir), "--out",
           str(out), *TINY, "--save-every", "1"]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _wait_for_checkpoint(proc: subprocess.Popen, root: Path, step: int) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        saved = checkpoint.list_checkpoints(root)
        if saved and int(saved[-1].name.split("-")[1]) >= step:
            return
        if proc.poll() is not None:
            pytest.fail(f"training ended before checkpoint {step}: {proc.stderr.read()}")
        time.sleep(0.02)
    proc.kill()
    pytest.fail("no checkpoint within 120 s")


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / SAE / "sae.safetensors"))


def _rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _assert_same_run(run_dir: Path, reference: Path) -> None:
    mine, theirs = _weights(run_dir), _weights(reference)
    for name, value in theirs.items():
        torch.testing.assert_close(mine[name], value, rtol=1e-5, atol=1e-6)
    rows, ref_rows = _rows(run_dir), _rows(reference)
    assert [r["step"] for r in rows] == list(range(1, 61))  # no step lost, none twice
    for row, ref in zip(rows, ref_rows, strict=True):
        assert row["tokens"] == ref["tokens"] and row["lr"] == ref["lr"]
        assert row["kl"] == pytest.approx(ref["kl"], rel=1e-4, abs=1e-7)


def test_kill_9_mid_run_then_resume_ends_as_an_unbroken_run(tiny_gpt2, tmp_path, reference,
                                                            one_thread):
    out = tmp_path / "run"
    proc = _start(tiny_gpt2, out)
    _wait_for_checkpoint(proc, out / "checkpoints", 4)
    proc.kill()  # SIGKILL: no handler runs, nothing is flushed or saved
    proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    assert not (out / SAE).exists()  # it really died before the end

    result = runner.invoke(app, ["train", "--resume", str(out), "--save-every", "1000"])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().splitlines()[-1] == str(out)
    _assert_same_run(out, reference)


def test_sigterm_saves_a_checkpoint_and_exits_143(tiny_gpt2, tmp_path, reference, one_thread):
    out = tmp_path / "run"
    proc = _start(tiny_gpt2, out)
    _wait_for_checkpoint(proc, out / "checkpoints", 2)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr
    stopped = [line for line in stderr.splitlines() if line.startswith("stopped by SIGTERM")]
    assert len(stopped) == 1, stderr
    step = int(stopped[0].split("after step ")[1].split(";")[0])
    assert step < 60
    saved = out / "checkpoints" / f"step-{step:06d}"
    assert f"checkpoint saved in {saved}" in stopped[0]
    assert stopped[0].endswith(f"continue with: sae-kit train --resume {out}")
    assert checkpoint.load(saved).counters.step == step
    assert [r["step"] for r in _rows(out)] == list(range(1, step + 1))

    result = runner.invoke(app, ["train", "--resume", str(out)])
    assert result.exit_code == 0, result.output
    _assert_same_run(out, reference)


def test_a_second_signal_exits_at_once(tmp_path):
    # A bare interpreter: the handler must not depend on training being under way.
    script = (
        "import os, signal, time\n"
        "from sae_kit.train.signals import stop_on_signals\n"
        "with stop_on_signals() as stop:\n"
        "    os.kill(os.getpid(), signal.SIGINT)\n"
        "    time.sleep(0.1)\n"
        "    assert stop.signum == signal.SIGINT, stop.signum\n"
        "    print('first signal only set the flag', flush=True)\n"
        "    os.kill(os.getpid(), signal.SIGINT)\n"
        "    time.sleep(30)\n"
        "print('not reached')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 130, done.stderr
    assert done.stdout == "first signal only set the flag\n"
    assert "second signal (SIGINT): exiting now without saving" in done.stderr
