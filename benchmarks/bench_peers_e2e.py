"""sae-kit's e2e (KL) TopK step against sparsify's `kl` loss, same model, batch, SAE shape.

    OMP_NUM_THREADS=1 python benchmarks/bench_peers_e2e.py               # both shapes, 3 rounds
    python benchmarks/bench_peers_e2e.py --shapes builtin --rounds 5

Needs eai-sparsify (`pip install 'sae-kit[bench]'`). For each shape (bench_e2e_step.py's
`build_model` and its CPU batch: the built-in model at 8 x 256 tokens, a random
GPT-2-small-shaped one at 2 x 256), a TopK SAE (k 32, ratio --dict-ratio) on the residual
entering the middle layer, lr 0 (weights and L0 stay as initialised), one thread:

- sae-kit: the trainer's step with the `e2e` loss plugin on a `Splice` (clean pass, spliced pass
  from the SAE's layer, chunked KL, backward, clipping, fused Adam) — what `sae-kit train
  --loss e2e --architecture topk` runs per micro-batch;
- sparsify: its own `Trainer.fit()` with `loss_fn="kl"`, Adam, the SAE on the output of the
  layer before (the same residual), its per-step time read as the CPU and wall time between
  two batches its DataLoader fetches (data is in memory: the fetch costs nothing measurable).

Each tool runs in a fresh child process, interleaved round by round; a child warms up, then
reports the median step. Allocators as in bench_peers.py: "shipped" (sae-kit reuses freed
buffers, sparsify keeps glibc's defaults) and "matched" (both reuse).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

SHAPES = ("builtin", "gpt2-small")


def _ids(vocab: int, n: int, context: int):  # noqa: ANN202 - a tensor
    import torch

    return torch.randint(0, vocab, (n, context), generator=torch.Generator().manual_seed(0))


def sae_kit_steps(shape: str, args: argparse.Namespace) -> tuple[list[float], list[float]]:
    import torch
    from bench_e2e_step import SHAPES as BATCH
    from bench_e2e_step import build_model

    from sae_kit import plugins
    from sae_kit.architectures.topk import TopKSAE
    from sae_kit.model.hookpoints import HookPoint
    from sae_kit.model.loading import adapter_for
    from sae_kit.model.splice import Splice
    from sae_kit.train import precision

    model, _ = build_model(shape)
    batch, context = BATCH[(shape, "cpu")]
    adapter = adapter_for(model)
    d_model, n_layers = adapter.d_model(model), len(adapter.layers(model))
    torch.manual_seed(0)
    hp = HookPoint(n_layers // 2)
    sae = TopKSAE(d_model, round(args.dict_ratio * d_model), k=32)
    splice = Splice(model, adapter, {hp: sae})
    loss = plugins.load("losses", "e2e")(1.0)
    opt = precision.adam(list(sae.parameters()), lr=0.0)
    ids = _ids(model.config.vocab_size, batch, context)
    cpu, wall = [], []
    for i in range(args.warmup + args.steps):
        c, w = time.process_time(), time.perf_counter()
        loss(splice, ids).loss.backward()
        torch.nn.utils.clip_grad_norm_(list(sae.parameters()), 10.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        if i >= args.warmup:
            cpu.append(time.process_time() - c)
            wall.append(time.perf_counter() - w)
    return cpu, wall


class _TimedRows:
    """In-memory rows for sparsify's DataLoader, noting the time each batch starts."""

    def __init__(self, ids, batch: int) -> None:  # noqa: ANN001 - a tensor
        self.ids, self.batch = ids, batch
        self.starts: list[tuple[float, float]] = []

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict:
        if i % self.batch == 0:
            self.starts.append((time.process_time(), time.perf_counter()))
        return {"input_ids": self.ids[i]}


def sparsify_steps(shape: str, args: argparse.Namespace) -> tuple[list[float], list[float]]:
    import contextlib
    import io

    from bench_e2e_step import SHAPES as BATCH
    from bench_e2e_step import build_model
    from sparsify import SparseCoderConfig, TrainConfig, Trainer

    model, _ = build_model(shape)
    batch, context = BATCH[(shape, "cpu")]
    n_layers = model.config.n_layer
    n_steps = args.warmup + args.steps + 1  # +1: the last interval ends at a fetch
    rows = _TimedRows(_ids(model.config.vocab_size, n_steps * batch, context), batch)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig(
            SparseCoderConfig(num_latents=round(args.dict_ratio * model.config.n_embd), k=32),
            batch_size=batch, loss_fn="kl", optimizer="adam", lr=0.0, lr_warmup_steps=0,
            layers=[n_layers // 2 - 1], log_to_wandb=False, save_every=10**9, save_dir=tmp)
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            Trainer(cfg, rows, model.requires_grad_(False)).fit()
    starts = rows.starts[args.warmup:]
    cpu = [b[0] - a[0] for a, b in zip(starts, starts[1:], strict=False)]
    wall = [b[1] - a[1] for a, b in zip(starts, starts[1:], strict=False)]
    return cpu, wall


def child(tool: str, shape: str, args: argparse.Namespace) -> None:
    if os.environ.get("BENCH_ALLOCATOR") == "reuse":
        from sae_kit.train.malloc import keep_freed_memory  # before torch allocates

        keep_freed_memory()
    import torch

    torch.set_num_threads(1)
    cpu, wall = (sae_kit_steps if tool == "sae-kit" else sparsify_steps)(shape, args)
    print(json.dumps({"cpu": statistics.median(cpu), "wall": statistics.median(wall)}))


def run_child(tool: str, shape: str, allocator: str, args: argparse.Namespace) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "SAE_KIT_MALLOC"}
    env["BENCH_ALLOCATOR"] = "reuse" if allocator == "matched" or tool == "sae-kit" else "system"
    done = subprocess.run([sys.executable, __file__, "--child", tool, "--shapes", shape,
                           "--steps", str(args.steps), "--warmup", str(args.warmup),
                           "--dict-ratio", str(args.dict_ratio)],
                          capture_output=True, text=True, env=env)
    if done.returncode:
        raise SystemExit(f"{tool} on {shape} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shapes", default=",".join(SHAPES))
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--dict-ratio", type=float, default=32.0)
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args.child, args.shapes, args)
    try:
        import sparsify  # noqa: F401
    except ImportError:
        raise SystemExit("sparsify is not installed: pip install 'sae-kit[bench]'") from None
    print(f"load average before: {os.getloadavg()}")
    got: dict[tuple[str, str, str], list[dict]] = {}
    for shape in args.shapes.split(","):
        for r in range(args.rounds):
            for tool, allocator in (("sae-kit", "shipped"), ("sparsify", "shipped"),
                                    ("sparsify", "matched")):
                res = run_child(tool, shape, allocator, args)
                got.setdefault((shape, tool, allocator), []).append(res)
                print(f"{shape} round {r + 1} {allocator:>8} {tool:>9}: {res['cpu'] * 1e3:8.1f} "
                      f"ms CPU, {res['wall'] * 1e3:8.1f} ms wall", flush=True)
    print(f"load average after: {os.getloadavg()}")
    for shape in args.shapes.split(","):
        ours = got[(shape, "sae-kit", "shipped")]
        for allocator in ("shipped", "matched"):
            theirs = got[(shape, "sparsify", allocator)]
            ratio = {m: statistics.median(t[m] for t in theirs) /
                     statistics.median(o[m] for o in ours) for m in ("cpu", "wall")}
            print(f"{shape:>10} e2e vs sparsify kl ({allocator}): sae-kit is "
                  f"{ratio['cpu']:.2f}x by CPU time, {ratio['wall']:.2f}x by wall time")


if __name__ == "__main__":
    main()
