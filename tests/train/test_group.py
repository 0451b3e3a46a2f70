"""Several SAEs trained in one pass end where each would alone.

The comparison is exact (torch.equal), not to a tolerance: sharing changes which passes run, not
the arithmetic. The clean pass is computed by the same ops on the same batch whoever asks for
it; each member's spliced pass, loss and backward are the same ops on the same tensors as alone
(each member runs its own backward); clipping, Adam and the schedule run per member. One thread
keeps torch's CPU kernels deterministic.
"""

import json

import pytest
import torch

from sae_kit.errors import SaeKitError
from sae_kit.record.config import TrainConfig
from sae_kit.train.build import build_run
from sae_kit.train.group import build_group, is_group, member_dirs
from sae_kit.train.loop import fit

pytestmark = pytest.mark.usefixtures("one_thread")


def _config(model_dir, out, **overrides):
    settings = dict(model=str(model_dir), dataset="pydoc", output_dir=str(out), loss="e2e",
                    hook_points=["blocks.1.hook_resid_pre"], context=32, batch_size=4,
                    grad_accum=2, dict_ratio=4, device="cpu", log_every=2, lr=3e-3,
                    n_samples=4 * 2 * 6, warmup_fraction=0.2, seed=5)
    settings.update(overrides)
    return TrainConfig(**settings)


def _weights(run_dir, hook_point="blocks.1.hook_resid_pre"):
    from safetensors.torch import load_file

    return load_file(str(run_dir / hook_point / "sae.safetensors"))


def _metrics(run_dir):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in r.items() if k != "tokens_per_s"} for r in rows]


MEMBERS = [  # lambda, architecture, options
    (0.05, "relu", {}),
    (0.5, "relu", {}),
    (0.2, "topk", {"k": 8}),
]


@pytest.mark.integration
@pytest.mark.parametrize("loss", ["local", "e2e", "e2e+ds"])
def test_each_sae_of_a_shared_pass_ends_at_its_lone_weights(tiny_gpt2, tmp_path, loss):
    group = tmp_path / "group"
    configs = [
        _config(tiny_gpt2, group / f"m{i}", loss=loss, sparsity_coeff=lam, architecture=arch,
                architecture_options=dict(opts))
        for i, (lam, arch, opts) in enumerate(MEMBERS)
    ]
    runs = build_group(configs)
    fit(runs, group_dir=group)
    for i in (1, 2):  # a member in the middle and the one of another architecture
        lam, arch, opts = MEMBERS[i]
        alone = tmp_path / f"alone{i}"
        fit(build_run(_config(tiny_gpt2, alone, loss=loss, sparsity_coeff=lam,
                              architecture=arch, architecture_options=dict(opts))))
        shared, lone = _weights(group / f"m{i}"), _weights(alone)
        assert shared.keys() == lone.keys()
        for name in lone:
            assert torch.equal(shared[name], lone[name]), (loss, i, name)
        assert _metrics(group / f"m{i}") == _metrics(alone)
        saved = json.loads((group / f"m{i}" / "config.json").read_text())
        assert saved["sparsity_coeff"] == lam and saved["architecture"] == arch


@pytest.mark.integration
def test_members_differ_and_the_clean_pass_runs_once_per_batch(tiny_gpt2, tmp_path):
    configs = [_config(tiny_gpt2, tmp_path / f"m{i}", loss="local", sparsity_coeff=lam,
                       n_samples=8) for i, lam in enumerate((0.01, 1.0))]
    runs = build_group(configs)
    calls = []
    runner = runs[0].splice.runner
    original = runner.run
    runner.run = lambda *a, **kw: calls.append(1) or original(*a, **kw)
    fit(runs, group_dir=tmp_path)
    assert len(calls) == 2  # 1 step x 2 micro-batches, for both members
    a, b = (_weights(tmp_path / f"m{i}") for i in range(2))
    assert not torch.equal(a["W_enc"], b["W_enc"])


def test_a_group_refuses_runs_that_cannot_share_a_pass(tiny_gpt2, tmp_path):
    configs = [_config(tiny_gpt2, tmp_path / "a"), _config(tiny_gpt2, tmp_path / "b", seed=9)]
    with pytest.raises(SaeKitError, match="must share seed"):
        build_group(configs)
    with pytest.raises(SaeKitError, match="its own output_dir"):
        build_group([_config(tiny_gpt2, tmp_path / "a"), _config(tiny_gpt2, tmp_path / "a")])


def test_a_group_directory_names_its_members(tiny_gpt2, tmp_path):
    from sae_kit.train.group import write_manifest

    runs = build_group([_config(tiny_gpt2, tmp_path / f"m{i}", loss="local", n_samples=8,
                                sparsity_coeff=lam) for i, lam in enumerate((0.1, 1.0))])
    write_manifest(tmp_path, runs)
    assert is_group(tmp_path)
    assert member_dirs(tmp_path) == [tmp_path / "m0", tmp_path / "m1"]


@pytest.mark.integration
def test_cli_lambda_list_trains_one_run_per_lambda_and_resumes_the_group(tiny_gpt2, tmp_path):
    import shutil

    from typer.testing import CliRunner

    from sae_kit.cli import app
    from sae_kit.train import checkpoint

    out = tmp_path / "group"
    args = ["train", "--model", str(tiny_gpt2), "--dataset", "pydoc", "--out", str(out),
            "--loss", "e2e",
            "--layer", "1", "--n-samples", "24", "--batch-size", "2", "--grad-accum", "2",
            "--context", "16", "--dict-ratio", "4", "--device", "cpu", "--log-every", "1",
            "--save-every", "2", "--lambda", "0.01,0.5"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert result.stdout.strip().splitlines()[-1] == str(out)
    members = [out / "lambda0.01", out / "lambda0.5"]
    assert member_dirs(out) == members
    finished = [_weights(m) for m in members]
    rows = [_metrics(m) for m in members]
    assert len(rows[0]) == 6 and rows[0] != rows[1]
    # As if killed while the members' step-6 checkpoints were being written: one has it.
    shutil.rmtree(checkpoint.list_checkpoints(members[1] / "checkpoints")[-1])
    for m in members:
        shutil.rmtree(m / "blocks.1.hook_resid_pre")
    result = CliRunner().invoke(app, ["train", "--resume", str(out), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    for m, weights, before in zip(members, finished, rows, strict=True):
        after = _weights(m)
        assert all(torch.equal(after[k], weights[k]) for k in weights)
        assert _metrics(m) == before


@pytest.mark.integration
def test_cli_lambda_list_is_checked(tiny_gpt2, tmp_path):
    from typer.testing import CliRunner

    from sae_kit.cli import app

    result = CliRunner().invoke(app, ["train", "--model", str(tiny_gpt2), "--lambda", "1,x"])
    assert result.exit_code == 2
    assert "error: --lambda takes numbers separated by commas" in result.output
