"""Progress in one shape everywhere: timed log lines, the Python API's default, group status."""

import logging

import pytest

from sae_kit.errors import SaeKitError
from sae_kit.progress import ProgressLines, log_seconds, progress_text
from sae_kit.train.stats import step_status


def _messages(caplog):
    return [r.getMessage() for r in caplog.records if r.name == "sae_kit"]


def test_lines_come_first_then_every_few_seconds_and_once_at_the_end(caplog, monkeypatch):
    clock = iter([0.0, 1.0, 2.0, 31.0, 40.0, 41.0, 42.0])
    monkeypatch.setattr("sae_kit.progress.time.monotonic", lambda: next(clock))
    caplog.set_level(logging.INFO, logger="sae_kit")
    lines = ProgressLines(every=30)
    for done in (0, 10, 20, 310, 400, 400):
        lines("reading text (tokens)", done, 400)
    lines("writing report (features)", 1, 8)
    said = _messages(caplog)
    assert said[0] == "reading text (tokens) 0/400 (0%)"
    assert said[1].startswith("reading text (tokens) 310/400 (78%), 0:00:")  # 30 s later, ETA
    assert said[2] == "reading text (tokens) 400/400 (100%)"  # the end, once
    assert said[3] == "writing report (features) 1/8 (12%)"  # a new phase speaks at once
    assert len(said) == 4


def test_a_total_too_large_for_an_eta_still_gives_a_line():
    text = progress_text(1, 10**30, {"first": 0, "started": 0.0}, 1e-6)
    assert text.startswith("1/1,000,000") and "left" not in text


def test_a_bad_log_interval_is_one_line(monkeypatch):
    monkeypatch.setenv("SAE_KIT_LOG_SECONDS", "soon")
    with pytest.raises(SaeKitError, match="SAE_KIT_LOG_SECONDS must be a number"):
        log_seconds()


def test_a_groups_status_shows_each_members_loss_never_their_sum():
    from types import SimpleNamespace

    from sae_kit.train.loop import _progress_row

    runs = [SimpleNamespace(run_dir=SimpleNamespace(name=n)) for n in ("lambda0.5", "lambda2")]
    rows = [{"tokens_per_s": 900.0, "loss": 1.25, "l0/blocks.1.hook_resid_pre": 30.0},
            {"tokens_per_s": 900.0, "loss": 0.5, "l0/blocks.1.hook_resid_pre": 4.0}]
    row = _progress_row(runs, rows)
    assert "loss" not in row and row["loss@lambda0.5"] == 1.25 and row["loss@lambda2"] == 0.5
    assert step_status(row) == "900 tok/s  loss 1.2500/0.5000  L0 30.0/4.0"
    assert step_status(rows[0]) == "900 tok/s  loss 1.2500  L0 30.0"


@pytest.mark.integration
def test_the_python_api_logs_training_progress_without_a_callback(tiny_gpt2, tmp_path, caplog,
                                                                  monkeypatch, one_thread):
    from sae_kit import TrainConfig, train_saes

    monkeypatch.setenv("SAE_KIT_LOG_SECONDS", "0")
    caplog.set_level(logging.INFO, logger="sae_kit")
    train_saes(TrainConfig(model=str(tiny_gpt2), dataset="pydoc", loss="local", hook_points=[
        "blocks.1.hook_resid_pre"], context=16, batch_size=2, grad_accum=1, n_samples=6,
        dict_ratio=4, device="cpu", log_every=1, output_dir=str(tmp_path / "run")))
    steps = [m for m in _messages(caplog) if m.startswith("training ")]
    assert steps[0].startswith("training 1/3 (33%)") and steps[-1].startswith("training 3/3")
    assert "loss" in steps[-1]
