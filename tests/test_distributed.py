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
from sae_kit.train import distributed
from sae_kit.train.build import build_run
from sae_kit.train.config import TrainConfig
from sae_kit.train.loop import fit
from tests.helpers import FIRST_PARTY

pytestmark = pytest.mark.slow  # two torchrun-style ranks in spawned processes

SAE = "blocks.1.hook_resid_pre"
STEPS = 4


def _config(model_dir: str, out: Path, batch_size: int) -> TrainConfig:
    return TrainConfig(model=model_dir, dataset="pydoc", output_dir=str(out), loss="e2e",
                       hook_points=[SAE],
                       context=16, batch_size=batch_size, grad_accum=2, dict_ratio=4,
                       device="cpu", log_every=1, lr=3e-3, seed=7, warmup_fraction=0.0,
                       n_samples=STEPS * 2 * 4)


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


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_two_ranks(model_dir: Path, out: Path, timeout: float = 240) -> None:
    # spawn, not fork: a fork copies whatever locks other threads of the test process hold
    # (OpenMP, HTTP servers of other tests), which deadlocked a rank now and then.
    procs = mp.start_processes(_worker, args=(2, _free_port(), str(model_dir), str(out)),
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
