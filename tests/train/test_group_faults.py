"""A run of a group (or sweep) that goes non-finite stops alone; the others train to the end.

The fault is real: a learning rate of 1e20 (or a lambda of 1e38) overflows the SAE, so a loss
term or the gradient is infinite or NaN at a known step.
"""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from sae_kit.cli import app
from sae_kit.record.config import TrainConfig
from sae_kit.train import checkpoint
from sae_kit.train.build import build_run
from sae_kit.train.group import build_group
from sae_kit.train.loop import fit
from sae_kit.train.nonfinite import MembersStopped, read_failure

pytestmark = pytest.mark.usefixtures("one_thread")

SAE = "blocks.1.hook_resid_pre"
OVERFLOW = {"lr": 1e20}
"""Adam's first step moves every weight by ~lr: the next forward pass overflows (step 2)."""


def _config(model_dir, out, **overrides):
    settings = dict(model=str(model_dir), dataset="pydoc", output_dir=str(out), loss="e2e",
                    hook_points=[SAE], context=16, batch_size=2, grad_accum=2, dict_ratio=4,
                    device="cpu", log_every=1, lr=3e-3, n_samples=2 * 2 * 4,
                    warmup_fraction=0.0, seed=5, save_every=1)
    settings.update(overrides)
    return TrainConfig(**settings)


def _weights(run_dir):
    return load_file(str(run_dir / SAE / "sae.safetensors"))


def _metrics(run_dir):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "tokens_per_s"} for r in rows]


@pytest.mark.integration
@pytest.mark.parametrize("order", [("a", "bad", "c"), ("bad", "a", "c")])
def test_a_member_that_overflows_stops_alone_and_the_others_end_at_their_lone_weights(
    tiny_gpt2, tmp_path, order
):
    # ("bad", ...): the member that stops is the one whose data stream the others read
    kinds = {"a": {"sparsity_coeff": 0.05}, "bad": OVERFLOW, "c": {"sparsity_coeff": 0.5}}
    members = {name: kinds[name] for name in order}
    group = tmp_path / "group"
    runs = build_group([_config(tiny_gpt2, group / name, **kw) for name, kw in members.items()])
    with pytest.raises(MembersStopped) as info:
        fit(runs, group_dir=group)

    bad = group / "bad"
    failure = read_failure(bad)
    assert failure is not None and failure["step"] == 2
    assert failure["reason"].startswith(("loss term", "gradient"))
    assert info.value.lines == [failure["error"]]  # one line, the one a lone run would give
    assert failure["error"] == (
        f"non-finite {failure['reason']} in {bad} at step 2; stopped without updating the "
        f"weights and the last good checkpoint is {bad / 'checkpoints' / 'step-000001'}; "
        "lower --lr or --lambda, or check the data")
    assert [p.name for p in checkpoint.list_checkpoints(bad / "checkpoints")] == ["step-000001"]
    assert not (bad / SAE).exists()
    assert [r["step"] for r in _metrics(bad)] == [1]

    for name in ("a", "c"):  # trained to the end, exactly as without the member that stopped
        alone = tmp_path / f"alone-{name}"
        fit(build_run(_config(tiny_gpt2, alone, **members[name])))
        shared, lone = _weights(group / name), _weights(alone)
        assert shared.keys() == lone.keys()
        assert all(torch.equal(shared[k], lone[k]) for k in lone), name
        assert _metrics(group / name) == _metrics(alone)
        assert read_failure(group / name) is None


def _cli_group(model_dir, out, *extra):
    return CliRunner().invoke(app, [
        "train", "--model", str(model_dir), "--dataset", "pydoc", "--out", str(out),
        "--loss", "local", "--layer", "1", "--n-samples", "12", "--batch-size", "2",
        "--grad-accum", "2", "--context", "16", "--dict-ratio", "4", "--device", "cpu",
        "--log-every", "1", "--save-every", "1", *extra])


@pytest.mark.integration
def test_cli_group_reports_each_stopped_member_and_resumes_the_others(tiny_gpt2, tmp_path):
    out = tmp_path / "group"
    result = _cli_group(tiny_gpt2, out, "--lambda", "0.01,1e38")  # lambda * L1 overflows
    assert result.exit_code == 1, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    bad, good = out / "lambda1e+38", out / "lambda0.01"
    assert len(errors) == 1 and f"in {bad} at step 1" in errors[0]
    assert "no checkpoint was saved before it" in errors[0]
    assert "Traceback" not in result.output
    assert read_failure(bad)["step"] == 1
    finished = _weights(good)  # saved before the CLI reported the other one
    rows = _metrics(good)
    assert len(rows) == 3

    # Interrupted before its end: the group resumes the member that did not stop, only it.
    shutil.rmtree(checkpoint.list_checkpoints(good / "checkpoints")[-1])
    shutil.rmtree(good / SAE)
    result = CliRunner().invoke(app, ["train", "--resume", str(out)])
    assert result.exit_code == 0, result.output
    warning = " ".join(result.stderr.split())
    assert "warning: resuming 1 of 2 runs; lambda1e+38 (step 1: non-finite" in warning
    assert "stopped earlier and stay as they are" in warning
    again = _weights(good)
    assert all(torch.equal(again[k], finished[k]) for k in finished)
    assert _metrics(good) == rows
    assert not (bad / SAE).exists() and read_failure(bad)["step"] == 1

    shutil.rmtree(good)  # every member stopped (or gone): nothing to resume, one line
    shutil.copytree(bad, good)
    result = CliRunner().invoke(app, ["train", "--resume", str(out)])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: every run in")
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.integration
def test_a_lone_run_still_stops_at_once_with_one_line_and_no_failure_record(tiny_gpt2,
                                                                          tmp_path):
    out = tmp_path / "lone"
    result = _cli_group(tiny_gpt2, out, "--lr", "1e20")
    assert result.exit_code == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: non-finite ")
    assert f"at step 2; stopped without updating the weights and the last good checkpoint is " \
           f"{out / 'checkpoints' / 'step-000001'}" in " ".join(result.stderr.split())
    assert read_failure(out) is None and not (out / "failed.json").exists()


@pytest.mark.integration
def test_a_stopped_member_resumed_alone_is_a_lone_run_again(tiny_gpt2, tmp_path):
    from sae_kit.errors import SaeKitError
    from sae_kit.train.nonfinite import record_failure
    from sae_kit.train.resume import resume

    group = tmp_path / "group"
    runs = build_group([_config(tiny_gpt2, group / "a"), _config(tiny_gpt2, group / "bad",
                                                                 **OVERFLOW)])
    with pytest.raises(MembersStopped):
        fit(runs, group_dir=group)
    run, start = resume(group / "bad")  # the same settings stop the same way, as a lone run
    with pytest.raises(SaeKitError) as info:
        fit(run, start=start)
    assert not isinstance(info.value, MembersStopped)
    assert " at step 2; " in str(info.value) and f"in {group}" not in str(info.value)
    assert read_failure(group / "bad")["step"] == 2  # still recorded

    # A stopped run that a lone resume takes to the end (here: one that had finished) is a
    # finished run again: no failed.json.
    record_failure(group / "a", 3, "loss term 'kl' = nan", "non-finite ...")
    run, start = resume(group / "a")
    fit(run, start=start)
    assert read_failure(group / "a") is None and (group / "a" / SAE / "sae.safetensors").exists()
