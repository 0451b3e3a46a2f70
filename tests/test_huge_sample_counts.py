"""A sample count past what a progress line can count in time (issue 21): a valid, if endless,
run must print its progress, not an OverflowError from ``timedelta``."""

import os
import signal
import subprocess
import sys
import time

import pytest

from sae_kit.cli.logs import LogLines

HUGE = 99999999999999999999


def test_the_log_line_of_an_endless_run_says_how_long_in_days(monkeypatch, caplog):
    monkeypatch.setenv("SAE_KIT_LOG_SECONDS", "0")
    lines = LogLines("training")
    task = lines.add_task("training", total=HUGE)
    lines.tasks[task]["started"] -= 1.0  # one step took a second
    with caplog.at_level("INFO", logger="sae_kit"):
        monkeypatch.setattr(lines.logger, "propagate", True)
        lines.update(task, completed=1)
    assert "more than 999,999,999 days left" in caplog.text


def test_an_ordinary_time_left_is_unchanged(monkeypatch, caplog):
    monkeypatch.setenv("SAE_KIT_LOG_SECONDS", "0")
    lines = LogLines("training")
    task = lines.add_task("training", total=101)
    lines.tasks[task]["started"] -= 1.0
    with caplog.at_level("INFO", logger="sae_kit"):
        monkeypatch.setattr(lines.logger, "propagate", True)
        lines.update(task, completed=1)
    assert "1/101 (1%), 0:01:40 left" in caplog.text


@pytest.mark.slow
def test_train_with_a_huge_n_samples_logs_progress_then_stops_on_sigterm(tiny_gpt2, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "SAE_KIT_LOG_SECONDS": "0"}
    cmd = [sys.executable, "-m", "sae_kit", "train", "--model", str(tiny_gpt2), "--out",
           str(tmp_path / "run"), "--dataset", "pydoc", "--n-samples", str(HUGE),
           "--batch-size", "2", "--grad-accum", "1", "--context", "16", "--dict-ratio", "2",
           "--device", "cpu", "--layer", "1", "--save-every", "1000000"]
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            text=True)
    seen, deadline = [], time.monotonic() + 180
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break  # it ended: the assertions below say how
        seen.append(line)
        if " left" in line:
            break
    proc.send_signal(signal.SIGTERM)
    rest = proc.communicate(timeout=120)[1]
    text = "".join(seen) + rest
    assert "more than 999,999,999 days left" in text, text
    assert "Traceback" not in text and "OverflowError" not in text
    assert proc.returncode == 143, text
