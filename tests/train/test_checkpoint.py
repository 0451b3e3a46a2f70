"""The checkpoint format: exact round trip, atomic layout, pruning, and clear errors."""

import json

import pytest
import torch

from sae_kit.errors import SaeKitError
from sae_kit.train import checkpoint
from sae_kit.train.checkpoint import TrainState


def _tree(seed: float = 1.0):
    return {
        "saes": {"blocks.1.hook_resid_pre": {"W_enc": torch.full((3, 2), seed)}},
        "optimizer": {"state": {0: {"step": torch.tensor(5.0), "exp_avg": torch.ones(2)}},
                      "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.999), "params": [0],
                                        "foreach": None}]},
        "rng": {"torch": torch.get_rng_state(), "python": [3, [1, 2, 3], None]},
    }


def _save(root, step, keep=2, seed=1.0):
    return checkpoint.save(root, TrainState(step=step, tokens=step * 10, windows=step * 4,
                                            metrics_offset=step * 100), _tree(seed), keep)


def test_round_trip_is_exact_and_keeps_int_keys(tmp_path):
    path = _save(tmp_path, 7, seed=2.5)
    assert path.name == "step-000007"
    assert sorted(p.name for p in path.iterdir()) == ["state.json", "tensors.safetensors"]
    loaded = checkpoint.load(path)
    assert loaded.counters == TrainState(step=7, tokens=70, windows=28, metrics_offset=700)
    tree = loaded.tree
    assert torch.equal(tree["saes"]["blocks.1.hook_resid_pre"]["W_enc"], torch.full((3, 2), 2.5))
    assert list(tree["optimizer"]["state"]) == [0]  # int key, as Adam's load_state_dict needs
    assert tree["optimizer"]["state"][0]["step"].item() == 5.0
    assert tree["optimizer"]["param_groups"][0]["betas"] == [0.9, 0.999]
    assert torch.equal(tree["rng"]["torch"], torch.get_rng_state())


def test_only_the_newest_are_kept_and_half_written_ones_are_swept(tmp_path):
    stale = tmp_path / ".step-000004.x1y2"  # what a kill -9 during a save leaves behind
    stale.mkdir()
    (stale / "tensors.safetensors").write_bytes(b"half")
    for step in (1, 2, 3, 4):
        _save(tmp_path, step, keep=2)
    assert [p.name for p in checkpoint.list_checkpoints(tmp_path)] == ["step-000003",
                                                                          "step-000004"]
    assert not stale.exists()


def test_adam_and_scheduler_state_survive_a_round_trip(tmp_path):
    param = torch.nn.Parameter(torch.randn(4))
    opt = torch.optim.Adam([param], lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1 / (s + 1))
    for _ in range(3):
        param.grad = torch.randn(4)
        opt.step()
        sched.step()
    tree = {"optimizer": opt.state_dict(), "scheduler": sched.state_dict()}
    loaded = checkpoint.load(checkpoint.save(tmp_path, TrainState(step=3), tree, keep=1)).tree

    twin = torch.nn.Parameter(param.detach().clone())
    opt2 = torch.optim.Adam([twin], lr=0.1)
    sched2 = torch.optim.lr_scheduler.LambdaLR(opt2, lambda s: 1 / (s + 1))
    opt2.load_state_dict(loaded["optimizer"])
    sched2.load_state_dict(loaded["scheduler"])
    grad = torch.randn(4)
    for p, o, s in ((param, opt, sched), (twin, opt2, sched2)):
        p.grad = grad.clone()
        o.step()
        s.step()
    assert torch.equal(param, twin) and sched.get_last_lr() == sched2.get_last_lr()


def _truncate(path):
    data = (path / "tensors.safetensors").read_bytes()
    (path / "tensors.safetensors").write_bytes(data[: len(data) // 2])


def _flip_a_byte(path):
    data = bytearray((path / "tensors.safetensors").read_bytes())
    data[-3] ^= 0xFF
    (path / "tensors.safetensors").write_bytes(bytes(data))


def _bad_json(path):
    (path / "state.json").write_text('{"format": ')


def _no_tensors(path):
    (path / "tensors.safetensors").unlink()


def _other_format(path):
    state = json.loads((path / "state.json").read_text())
    state["format"] = "something-else/9"
    (path / "state.json").write_text(json.dumps(state))


@pytest.mark.parametrize(("damage", "reason"), [
    (_truncate, "tensors.safetensors does not match its checksum"),
    (_flip_a_byte, "tensors.safetensors does not match its checksum"),
    (_bad_json, "state.json is not valid JSON"),
    (_no_tensors, "tensors.safetensors is missing"),
    (_other_format, "format is 'something-else/9'"),
])
def test_a_damaged_checkpoint_is_one_clear_error(tmp_path, damage, reason):
    path = _save(tmp_path, 3)
    damage(path)
    with pytest.raises(SaeKitError) as info:
        checkpoint.load(path)
    message = str(info.value)
    assert f"checkpoint {str(path)!r} is corrupt: {reason}" in message
    assert "\n" not in message


def test_latest_falls_back_past_a_corrupt_one_and_errors_when_all_are(tmp_path):
    _save(tmp_path, 1, seed=1.0)
    newest = _save(tmp_path, 2, seed=2.0)
    _truncate(newest)
    loaded, skipped = checkpoint.load_latest(tmp_path)
    assert loaded.counters.step == 1 and [p for p, _ in skipped] == [newest]

    _bad_json(loaded.path)
    with pytest.raises(SaeKitError, match="every checkpoint in .* is unreadable"):
        checkpoint.load_latest(tmp_path)
    with pytest.raises(SaeKitError, match="no checkpoint in"):
        checkpoint.load_latest(tmp_path / "empty")


def test_a_failed_write_leaves_the_earlier_checkpoints_and_no_temp_dir(tmp_path, monkeypatch):
    _save(tmp_path, 1)
    import safetensors.torch

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_file", disk_full)
    with pytest.raises(SaeKitError) as info:
        _save(tmp_path, 2)
    assert "could not write checkpoint" in str(info.value)
    assert "(No space left on device); the earlier checkpoints are intact" in str(info.value)
    assert [p.name for p in tmp_path.iterdir()] == ["step-000001"]
    assert checkpoint.load(tmp_path / "step-000001").counters.step == 1
