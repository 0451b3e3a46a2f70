"""A sample count past what a progress line can count in time (issue 21): a valid, if endless,
run must print its progress (without a time left, which ``timedelta`` cannot hold), not an
OverflowError."""

import os
import re
import signal
import subprocess
import sys
import time

import pytest

from sae_kit.progress import progress_text

HUGE = 99999999999999999999


def test_the_progress_line_of_an_endless_run_has_no_eta_and_no_overflow():
    text = progress_text(1, HUGE, {"first": 0, "started": 0.0}, now=1.0)
    assert text == f"1/{HUGE:,} (0%)"  # timedelta cannot hold the time left: none is shown


def test_an_ordinary_time_left_is_unchanged():
    assert progress_text(1, 101, {"first": 0, "started": 0.0}, now=1.0) == (
        "1/101 (1%), 0:01:40 left")


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
        if "training 1/" in line:
            break
    proc.send_signal(signal.SIGTERM)
    rest = proc.communicate(timeout=120)[1]
    text = "".join(seen) + rest
    line = re.search(r"training 1/([\d,]+) \(0%\).*", text)
    assert line and int(line.group(1).replace(",", "")) >= HUGE // 2, text  # steps
    assert " left" not in line.group(0)  # no time left: timedelta cannot hold it
    assert "Traceback" not in text and "OverflowError" not in text
    assert proc.returncode == 143, text
