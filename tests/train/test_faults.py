"""Faults and bad input around checkpoints: NaN, corrupt files, changed settings on resume."""

import math
import shutil

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from sae_kit.cli import app
from sae_kit.errors import SaeKitError
from sae_kit.record.config import TrainConfig
from sae_kit.train import checkpoint
from sae_kit.train.build import build_run
from sae_kit.train.loop import fit
from tests.helpers import SAE_AT_1, SAVE_EVERY_STEP, cli_train

runner = CliRunner()
SAE = SAE_AT_1
TINY = SAVE_EVERY_STEP


pytestmark = pytest.mark.usefixtures("one_thread")


def _run(model_dir, out, **overrides):
    settings = dict(model=str(model_dir), dataset="pydoc", output_dir=str(out), loss="e2e",
                    hook_points=[f"{SAE}"], context=16, batch_size=2, grad_accum=1,
                    dict_ratio=4, device="cpu", log_every=1, n_samples=12, save_every=1)
    settings.update(overrides)
    return build_run(TrainConfig(**settings))


class _NanAt:
    """Wraps a loss so that its `kl` term (and so the loss) is NaN at one call."""

    def __init__(self, loss, call: int) -> None:
        self.loss, self.call, self.calls = loss, call, 0

    def __call__(self, splice, input_ids):
        self.calls += 1
        result = self.loss(splice, input_ids)
        if self.calls == self.call:
            result.loss = result.loss * math.nan
            result.terms["kl"] = result.terms["kl"] * math.nan
        return result


def _poison_gradient_at(sae, step: int) -> None:
    calls = {"n": 0}

    def hook(grad):
        calls["n"] += 1
        return grad * math.inf if calls["n"] == step else grad

    sae.W_enc.register_hook(hook)


@pytest.mark.integration
@pytest.mark.parametrize("fault", ["loss", "gradient"])
def test_nonfinite_stops_before_the_update_and_keeps_the_last_good_checkpoint(
    tiny_gpt2, tmp_path, fault
):
    out = tmp_path / "run"
    run = _run(tiny_gpt2, out)
    sae = run.saes[next(iter(run.saes))]
    if fault == "loss":
        run.loss = _NanAt(run.loss, call=3)
        expected = "non-finite loss term 'kl' = nan at step 3"
    else:
        _poison_gradient_at(sae, step=3)
        expected = "non-finite gradient (norm inf) at step 3"
    with pytest.raises(SaeKitError) as info:
        fit(run)
    message = str(info.value)
    last_good = out / "checkpoints" / "step-000002"
    assert expected in message and f"the last good checkpoint is {last_good}" in message
    assert [p.name for p in checkpoint.list_checkpoints(out / "checkpoints")] == [
        "step-000001", "step-000002"]
    saved = checkpoint.load(last_good).tree["saes"][SAE]
    assert all(torch.isfinite(t).all() for t in saved.values())
    for name, value in sae.state_dict().items():  # the bad step changed nothing
        assert torch.equal(value, saved[name]), name
    assert not (out / SAE).exists()  # no final weights from a failed run


def _train(model_dir, out, *extra):
    return cli_train(model_dir, out, *extra, base=TINY)


@pytest.mark.integration
def test_a_corrupt_newest_checkpoint_falls_back_then_all_corrupt_is_one_line(tiny_gpt2,
                                                                              tmp_path):
    out = tmp_path / "run"
    assert _train(tiny_gpt2, out).exit_code == 0
    finished = load_file(str(out / SAE / "sae.safetensors"))
    newest = out / "checkpoints" / "step-000003"
    data = (newest / "tensors.safetensors").read_bytes()
    (newest / "tensors.safetensors").write_bytes(data[:100])  # truncated

    result = runner.invoke(app, ["train", "--resume", str(out)])
    assert result.exit_code == 0, result.output
    warning = " ".join(result.stderr.split())
    assert f"warning: checkpoint {str(newest)!r} is corrupt" in warning
    assert "renamed it to step-000003.corrupt and resumed from step-000002" in warning
    assert (out / "checkpoints" / "step-000003.corrupt").is_dir()
    redone = load_file(str(out / SAE / "sae.safetensors"))
    for name, value in finished.items():  # step 3 done again gives the same weights
        torch.testing.assert_close(redone[name], value, rtol=1e-5, atol=1e-6)

    for path in checkpoint.list_checkpoints(out / "checkpoints"):
        (path / "state.json").write_text("not json")
    result = runner.invoke(app, ["train", "--resume", str(out)])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: every checkpoint in")
    assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.output


@pytest.mark.integration
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--lr", "1", "--seed", "3"], "--resume takes its settings from {out}/config.json; "
                                       "drop --lr, --seed"),
        (["--save-every", "0"], "invalid training settings: save_every=0"),
    ],
)
def test_resume_refuses_settings_that_change_the_run(tiny_gpt2, tmp_path, args, message):
    out = tmp_path / "run"
    assert _train(tiny_gpt2, out).exit_code == 0
    result = runner.invoke(app, ["train", "--resume", str(out), *args])
    assert result.exit_code == 2
    assert message.format(out=out) in " ".join(result.stderr.split())
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.integration
def test_resume_and_fresh_runs_refuse_the_wrong_directory(tiny_gpt2, tmp_path):
    result = runner.invoke(app, ["train", "--resume", str(tmp_path)])
    assert result.exit_code == 2
    assert "is not a sae-kit run directory (no config.json)" in result.stderr

    out = tmp_path / "run"
    assert _train(tiny_gpt2, out).exit_code == 0
    result = _train(tiny_gpt2, out)  # a new run must not mix with the old one's checkpoints
    assert result.exit_code == 2
    assert "already holds checkpoints of a run; continue it with" in " ".join(
        result.stderr.split())


@pytest.mark.integration
def test_resume_drops_metrics_rows_logged_after_its_checkpoint(tiny_gpt2, tmp_path):
    out = tmp_path / "run"
    assert _train(tiny_gpt2, out, "--save-every", "2").exit_code == 0  # saves steps 2 and 3
    rows_before = (out / "metrics.jsonl").read_text().splitlines()
    final = out / "checkpoints" / "step-000003"
    shutil.rmtree(final)  # as if killed after logging step 3 but before saving it
    result = runner.invoke(app, ["train", "--resume", str(out)])
    assert result.exit_code == 0, result.output
    rows = (out / "metrics.jsonl").read_text().splitlines()
    assert [line.split(",")[0] for line in rows] == ['{"step": 1', '{"step": 2', '{"step": 3']
    assert rows[:2] == rows_before[:2]
