"""Data-parallel training: 2 CPU processes on the gloo backend against 1 process.

The workers get the environment torchrun would give them (RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR, MASTER_PORT) and train through the same API the CLI uses.
"""

import json
import os
import socket
import time
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file

from sae_kit.errors import SaeKitError
from sae_kit.record.config import TrainConfig
from sae_kit.train import distributed
from sae_kit.train.build import build_run
from sae_kit.train.loop import fit
from tests.helpers import FIRST_PARTY

pytestmark = pytest.mark.slow  # two torchrun-style ranks in spawned processes

SAE = "blocks.1.hook_resid_pre"
STEPS = 4


def _config(model_dir: str, out: Path, batch_size: int, **overrides) -> TrainConfig:
    settings = dict(model=model_dir, dataset="pydoc", output_dir=str(out), loss="e2e",
                    hook_points=[SAE], context=16, batch_size=batch_size, grad_accum=2,
                    dict_ratio=4, device="cpu", log_every=1, lr=3e-3, seed=7,
                    warmup_fraction=0.0, n_samples=STEPS * 2 * 4)
    return TrainConfig(**{**settings, **overrides})


def _worker(rank: int, world_size: int, port: int, model_dir: str, out: str) -> None:
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
                      SAE_KIT_PLUGINS=FIRST_PARTY, HF_HUB_OFFLINE="1")
    torch.set_num_threads(1)  # tiny model: threads only add overhead
    try:
        run = build_run(_config(model_dir, Path(out) / "run", batch_size=2))
        fit(run)
        state = {k: v.detach().contiguous() for k, v in next(iter(run.saes.values()))
                 .state_dict().items()}
        save_file(state, str(Path(out) / f"rank{rank}.safetensors"))
    finally:
        distributed.teardown()


LAMBDAS = {"a": 0.05, "b": 0.5}


class _NanTermOnRank1:
    """A loss whose logged `kl` term (not the loss: its gradient stays finite) is NaN at one
    call on rank 1 only: only the ranks' agreement stops the member on rank 0 too."""

    def __init__(self, loss, call: int) -> None:
        self.loss, self.call, self.calls = loss, call, 0

    def __call__(self, splice, input_ids):
        self.calls += 1
        result = self.loss(splice, input_ids)
        if self.calls == self.call and os.environ["RANK"] == "1":
            result.terms["kl"] = result.terms["kl"] * float("nan")
        return result


def _group_worker(rank: int, world_size: int, port: int, model_dir: str, out: str) -> None:
    """A 2-SAE group, each SAE alone, and the group with one SAE going NaN on rank 1."""
    from sae_kit.train.group import build_group
    from sae_kit.train.nonfinite import MembersStopped

    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
                      SAE_KIT_PLUGINS=FIRST_PARTY, HF_HUB_OFFLINE="1")
    torch.set_num_threads(1)
    root = Path(out)
    try:
        def member(where: Path, name: str):
            return _config(model_dir, where / name, batch_size=2,
                           sparsity_coeff=LAMBDAS[name], save_every=1)

        runs = build_group([member(root / "group", n) for n in LAMBDAS])
        fit(runs, group_dir=root / "group")
        for name, run in zip(LAMBDAS, runs, strict=True):
            _save_rank(run, root / f"group-{name}-rank{rank}.safetensors")
        for name in LAMBDAS:
            fit(build_run(member(root / "alone", name)))
        runs = build_group([member(root / "poison", n) for n in LAMBDAS])
        inner = runs[1].loss.ddp.module  # the objective DDP wraps: its loss, not DDP's
        inner.loss = _NanTermOnRank1(inner.loss, call=3)  # step 2's first micro-batch
        try:
            fit(runs, group_dir=root / "poison")
        except MembersStopped as stopped:
            (root / f"stopped-rank{rank}.txt").write_text("\n".join(stopped.lines))
        _save_rank(runs[0], root / f"poison-a-rank{rank}.safetensors")
    finally:
        distributed.teardown()


def _save_rank(run, path: Path) -> None:
    sae = next(iter(run.saes.values()))
    save_file({k: v.detach().contiguous() for k, v in sae.state_dict().items()}, str(path))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_two_ranks(model_dir: Path, out: Path, timeout: float = 240, worker=_worker) -> None:
    # spawn, not fork: a fork copies whatever locks other threads of the test process hold
    # (OpenMP, HTTP servers of other tests), which deadlocked a rank now and then.
    procs = mp.start_processes(worker, args=(2, _free_port(), str(model_dir), str(out)),
                               nprocs=2, join=False, start_method="spawn")
    deadline = time.monotonic() + timeout
    while not procs.join(timeout=1):  # raises if a rank failed
        if time.monotonic() > deadline:
            for proc in procs.processes:
                proc.kill()
            pytest.fail(f"2-rank training did not finish in {timeout} s")


def test_two_gloo_ranks_stay_identical_and_match_one_process(tiny_gpt2, tmp_path):
    _run_two_ranks(tiny_gpt2, tmp_path)
    ranks = [load_file(str(tmp_path / f"rank{r}.safetensors")) for r in (0, 1)]
    for name, value in ranks[0].items():
        assert torch.equal(value, ranks[1][name]), name  # bit-identical across ranks

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    single = tmp_path / "single"
    run = build_run(_config(str(tiny_gpt2), single, batch_size=4))  # same global batch
    torch.set_num_threads(threads)
    before = {k: v.clone() for k, v in run.saes[next(iter(run.saes))].state_dict().items()}
    fit(run)
    reference = load_file(str(single / SAE / "sae.safetensors"))
    for name, value in reference.items():
        assert not torch.equal(value, before[name]), name  # it trained
        torch.testing.assert_close(ranks[0][name], value, rtol=1e-5, atol=1e-6)

    # Only rank 0 wrote: one metrics row per step, and the same global token counts.
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    ref_rows = [json.loads(line) for line in (single / "metrics.jsonl").open()]
    assert [r["step"] for r in rows] == list(range(1, STEPS + 1))
    assert [r["tokens"] for r in rows] == [r["tokens"] for r in ref_rows]
    for row, ref in zip(rows, ref_rows, strict=True):
        assert row["loss"] == pytest.approx(ref["loss"], rel=1e-5)
        assert row[f"alive/{SAE}"] == ref[f"alive/{SAE}"]
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["resolved"]["world_size"] == 2 and config["resolved"]["total_steps"] == STEPS


def test_a_two_rank_group_ends_where_each_sae_ends_alone_on_two_ranks(tiny_gpt2, tmp_path):
    """The equivalence is with the same SAE trained alone on 2 ranks: one process averages
    the gradient in another order (close, not equal; see the test above)."""
    from sae_kit.train.nonfinite import read_failure

    _run_two_ranks(tiny_gpt2, tmp_path, timeout=400, worker=_group_worker)
    for name in LAMBDAS:
        ranks = [load_file(str(tmp_path / f"group-{name}-rank{r}.safetensors")) for r in (0, 1)]
        alone = load_file(str(tmp_path / "alone" / name / SAE / "sae.safetensors"))
        shared = load_file(str(tmp_path / "group" / name / SAE / "sae.safetensors"))
        for key, value in alone.items():
            assert torch.equal(ranks[0][key], ranks[1][key]), (name, key)
            assert torch.equal(shared[key], value), (name, key)  # bit-identical to alone
        rows = [json.loads(line) for line in (tmp_path / "group" / name / "metrics.jsonl").open()]
        ref = [json.loads(line) for line in (tmp_path / "alone" / name / "metrics.jsonl").open()]
        drop = {"tokens_per_s"}
        assert [{k: v for k, v in r.items() if k not in drop} for r in rows] == \
               [{k: v for k, v in r.items() if k not in drop} for r in ref]

    # b's logged term went NaN on rank 1 alone: both ranks stopped b at step 2 and went on with
    # a, which still ends at its lone weights on both ranks.
    failure = read_failure(tmp_path / "poison" / "b")
    assert failure is not None and failure["step"] == 2
    lines = [(tmp_path / f"stopped-rank{r}.txt").read_text() for r in (0, 1)]
    assert lines[0] == failure["error"] and f"in {tmp_path / 'poison' / 'b'} at step 2" in lines[1]
    assert not (tmp_path / "poison" / "b" / SAE).exists()
    alone = load_file(str(tmp_path / "alone" / "a" / SAE / "sae.safetensors"))
    for r in (0, 1):
        poisoned = load_file(str(tmp_path / f"poison-a-rank{r}.safetensors"))
        assert all(torch.equal(poisoned[k], alone[k]) for k in alone), r


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"WORLD_SIZE": "two"}, "RANK, WORLD_SIZE and LOCAL_RANK must be integers"),
        ({"WORLD_SIZE": "2", "RANK": "2"}, "RANK=2 is outside WORLD_SIZE=2"),
    ],
)
def test_a_broken_launch_environment_is_one_clear_line(env, message):
    with pytest.raises(SaeKitError, match=message):
        distributed.from_env(env)


def test_without_torchrun_it_is_one_process():
    dist = distributed.from_env({})
    assert (dist.rank, dist.world_size, dist.is_main, dist.enabled) == (0, 1, True, False)
