"""A group killed between its members' checkpoint saves still has a step they all hold, even
with --keep-checkpoints 1 (issue 21): old checkpoints are pruned only once every member has
saved, so `--resume GROUP` continues instead of saying to start again."""

import pytest
from safetensors.torch import load_file
from typer.testing import CliRunner

from sae_kit.cli import app
from sae_kit.train import checkpoint, loop
from tests.helpers import SAE_AT_1, SAVE_EVERY_STEP, cli_train

pytestmark = pytest.mark.integration  # the CLI, a subprocess, whole runs

KEEP_ONE = [a if a != "2" or SAVE_EVERY_STEP[i - 1] != "--keep-checkpoints" else "1"
            for i, a in enumerate(SAVE_EVERY_STEP)]


class Killed(BaseException):
    """Stands for the process dying (not an Exception: nothing may catch it)."""


def _steps(run_dir):
    return [p.name for p in checkpoint.list_checkpoints(run_dir / "checkpoints")]


def _killed_between_saves(model_dir, group, monkeypatch):
    saves = []
    real = loop.save_checkpoint

    def dies_at_the_second_members_second_save(run, state):
        saves.append(run.run_dir)
        if len(saves) == 4:  # step 2: the first member saved, the second has not
            raise Killed
        return real(run, state)

    monkeypatch.setattr(loop, "save_checkpoint", dies_at_the_second_members_second_save)
    with pytest.raises(Killed):
        cli_train(model_dir, group, "--lambda", "0.5,1", *KEEP_ONE, base=[])
    monkeypatch.undo()
    return group / "lambda0.5", group / "lambda1"


@pytest.mark.usefixtures("one_thread")
def test_a_kill_between_two_members_saves_leaves_a_common_step(tiny_gpt2, tmp_path,
                                                               monkeypatch):
    group = tmp_path / "group"
    first, second = _killed_between_saves(tiny_gpt2, group, monkeypatch)
    assert _steps(first) == ["step-000001", "step-000002"]  # step 1 not yet pruned
    assert _steps(second) == ["step-000001"]

    result = CliRunner().invoke(app, ["train", "--resume", str(group)])
    assert result.exit_code == 0, result.output
    assert _steps(first) == _steps(second) == ["step-000003"]  # keep 1, as asked

    unbroken = tmp_path / "unbroken"
    assert cli_train(tiny_gpt2, unbroken, "--lambda", "0.5,1", *KEEP_ONE,
                     base=[]).exit_code == 0
    for name in ("lambda0.5", "lambda1"):
        got = load_file(group / name / SAE_AT_1 / "sae.safetensors")
        want = load_file(unbroken / name / SAE_AT_1 / "sae.safetensors")
        assert all((got[k] == want[k]).all() for k in want), name


@pytest.mark.usefixtures("one_thread")
def test_a_group_left_without_a_common_step_says_how_to_resume_each_member(tiny_gpt2, tmp_path,
                                                                           monkeypatch):
    group = tmp_path / "group"
    first, second = _killed_between_saves(tiny_gpt2, group, monkeypatch)
    checkpoint.prune(first / "checkpoints", 1)  # what the code before the fix had left
    result = CliRunner().invoke(app, ["train", "--resume", str(group)])
    assert result.exit_code == 2, result.output
    assert "no checkpoint of a common step" in result.output and "Traceback" not in result.output
    assert f"sae-kit train --resume {first}; sae-kit train --resume {second}" in " ".join(
        result.output.split())
    for member in (first, second):  # the way out it names works
        assert CliRunner().invoke(app, ["train", "--resume", str(member)]).exit_code == 0
        assert (member / SAE_AT_1 / "sae.safetensors").is_file()


def _sweep_killed_between_saves(model_dir, tmp_path, monkeypatch):
    """A sweep of two points in one pass, keep_checkpoints = 1, killed at the second member's
    second save; the two point directories."""
    path = tmp_path / "sweep.toml"
    path.write_text(f'out = "{tmp_path / "runs"}"\neval_tokens = 64\n[base]\n'
                    f'model = "{model_dir}"\ndataset = "pydoc"\ncontext = 16\nbatch_size = 2\n'
                    'grad_accum = 1\nn_samples = 6\ndict_ratio = 4\nlayer = 1\ndevice = "cpu"\n'
                    'save_every = 1\nkeep_checkpoints = 1\n[grid]\nlambda = [0.5, 1]\n')
    saves = []
    real = loop.save_checkpoint

    def dies(run, state):
        saves.append(run.run_dir)
        if len(saves) == 4:
            raise Killed
        return real(run, state)

    monkeypatch.setattr(loop, "save_checkpoint", dies)
    with pytest.raises(Killed):
        CliRunner().invoke(app, ["sweep", str(path)], catch_exceptions=False)
    monkeypatch.undo()
    return path, tmp_path / "runs" / "lambda0.5", tmp_path / "runs" / "lambda1"


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("left_by", ["this sae-kit", "an older sae-kit"])
def test_a_sweep_killed_between_two_members_saves_goes_on_when_run_again(
        tiny_gpt2, tmp_path, monkeypatch, left_by):
    path, first, second = _sweep_killed_between_saves(tiny_gpt2, tmp_path, monkeypatch)
    if left_by == "an older sae-kit":
        checkpoint.prune(first / "checkpoints", 1)  # no common step: the stuck state
    result = CliRunner().invoke(app, ["sweep", str(path)])
    assert result.exit_code == 0, result.output
    for member in (first, second):
        assert (member / "eval.json").is_file()
        assert (member / SAE_AT_1 / "sae.safetensors").is_file()
    if left_by == "an older sae-kit":
        assert "resuming them one after another" in result.output
    again = CliRunner().invoke(app, ["sweep", str(path)])  # every later sweep: nothing to do
    assert again.exit_code == 0 and "resuming" not in again.output, again.output
