"""sae-kit's local TopK SAE step against EleutherAI's sparsify and SAELens, same shapes.

    OMP_NUM_THREADS=1 python benchmarks/bench_peers.py               # both shapes, 3 rounds
    python benchmarks/bench_peers.py --shapes builtin --rounds 5 --json peers.json
    python benchmarks/bench_peers.py --device cuda --rounds 2   # GPU: wall time, synchronised

Peers are optional (`pip install 'sae-kit[bench]'`: eai-sparsify, sae-lens); a peer that is
not installed is left out with a line saying so. What is timed, for every tool on the same
activations (random, fixed by the seed; d_in, dictionary, k and tokens per step as the shape
says): one training step of a TopK SAE with the local (MSE) objective — forward, loss, backward,
Adam step and the tool's own per-step decoder upkeep:

- sae-kit: the `topk` architecture plugin (decoder renormalised inside the forward pass), the
  `local` loss's MSE, the trainer's Adam (fused) and gradient-norm clip;
- sparsify: `SparseCoder(...).forward(x).fvu` (its loss), Adam, then, as its trainer does,
  `remove_gradient_parallel_to_decoder_directions` before and `set_decoder_norm_to_unit_norm`
  after the step;
- SAELens: `TopKTrainingSAE.training_forward_pass(...).loss` (MSE + its AuxK term), Adam.

Each (tool, allocator) runs in a fresh child process, interleaved round by round so that load
changes hit all alike; a child warms up, then times --steps steps and reports the median step
by CPU time (user + system of the process: what a shared core inflates least) and by wall time.
Allocators: "shipped" is each tool as it comes (sae-kit's command and API set glibc to reuse
freed buffers; the peers keep glibc's defaults), "matched" gives every tool sae-kit's setting.
The model's own forward up to the hook point (the same work for every tool) is not timed; the
e2e (KL) step against sparsify is benchmarks/bench_peers_e2e.py. On --device cuda the
allocator setting does not apply (one "shipped" run per tool) and a step's time is read after
torch.cuda.synchronize(): its wall time is the figure there.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

SHAPES = {  # d_in, n_dict, k, tokens per step
    "builtin": (128, 7680, 32, 2048),  # sae-kit-tiny: d_model 128, ratio 60, 8 x 256 tokens
    "gpt2-small": (768, 24576, 32, 1024),  # GPT-2 small's width, ratio 32, 1024 tokens
}
TOOLS = ("sae-kit", "sparsify", "sae-lens")


def _installed(tool: str) -> bool:
    module = {"sae-kit": "sae_kit", "sparsify": "sparsify", "sae-lens": "sae_lens"}[tool]
    try:
        __import__(module)
    except ImportError:
        return False
    return True


def _step_fn(tool: str, d_in: int, n_dict: int, k: int, device: str = "cpu"):  # noqa: ANN202
    import torch

    if tool == "sae-kit":
        import torch.nn.functional as F

        from sae_kit.architectures.topk import TopKSAE
        from sae_kit.train.precision import adam

        sae = TopKSAE(d_in, n_dict, k=k).to(device)
        opt = adam(list(sae.parameters()), lr=1e-4)  # the trainer's (fused where torch has it)

        def step(x: torch.Tensor) -> None:
            opt.zero_grad(set_to_none=True)
            out = sae(x)
            F.mse_loss(out.output, x).backward()
            torch.nn.utils.clip_grad_norm_(sae.parameters(), 10.0)
            opt.step()
        return step
    if tool == "sparsify":
        from sparsify import SparseCoder, SparseCoderConfig

        sae = SparseCoder(d_in, SparseCoderConfig(num_latents=n_dict, k=k)).to(device)
        opt = torch.optim.Adam(sae.parameters(), lr=1e-4)

        def step(x: torch.Tensor) -> None:
            opt.zero_grad(set_to_none=True)
            sae(x).fvu.backward()
            sae.remove_gradient_parallel_to_decoder_directions()
            opt.step()
            sae.set_decoder_norm_to_unit_norm()
        return step
    from sae_lens.saes.sae import TrainStepInput
    from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig

    sae = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=d_in, d_sae=n_dict, k=k,
                                                device=device)).to(device)
    opt = torch.optim.Adam(sae.parameters(), lr=1e-4)
    dead = torch.zeros(n_dict, dtype=torch.bool, device=device)

    def step(x: torch.Tensor) -> None:
        opt.zero_grad(set_to_none=True)
        out = sae.training_forward_pass(TrainStepInput(
            sae_in=x, coefficients={}, dead_neuron_mask=dead, n_training_steps=0,
            is_logging_step=False))
        out.loss.backward()
        opt.step()
    return step


def child(tool: str, shape: str, steps: int, warmup: int, seed: int, device: str) -> None:
    if os.environ.get("BENCH_ALLOCATOR") == "reuse":
        from sae_kit.train.malloc import keep_freed_memory  # before torch allocates

        keep_freed_memory()
    import torch

    torch.manual_seed(seed)
    d_in, n_dict, k, tokens = SHAPES[shape]
    x = torch.randn(tokens, d_in).to(device)
    step = _step_fn(tool, d_in, n_dict, k, device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    cpu, wall = [], []
    for i in range(warmup + steps):
        sync()
        c0, w0 = time.process_time(), time.perf_counter()
        step(x)
        sync()
        if i >= warmup:
            cpu.append(time.process_time() - c0)
            wall.append(time.perf_counter() - w0)
    print(json.dumps({"cpu": statistics.median(cpu), "wall": statistics.median(wall)}))


def run_child(tool: str, shape: str, allocator: str, args: argparse.Namespace) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("SAE_KIT_MALLOC",
                                                             "THP_MEM_ALLOC_ENABLE")}
    # shipped: sae-kit as its command and API run; the peers with glibc's defaults
    reuse = allocator == "matched" or tool == "sae-kit"
    env["BENCH_ALLOCATOR"] = "reuse" if reuse else "system"
    done = subprocess.run([sys.executable, __file__, "--child", tool, "--shapes", shape,
                           "--steps", str(args.steps), "--warmup", str(args.warmup),
                           "--seed", str(args.seed), "--device", args.device],
                          capture_output=True, text=True, env=env)
    if done.returncode:
        raise SystemExit(f"{tool} on {shape} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shapes", default="builtin,gpt2-small")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        return child(args.child, args.shapes, args.steps, args.warmup, args.seed, args.device)
    tools = [t for t in TOOLS if _installed(t)]
    for t in set(TOOLS) - set(tools):
        print(f"{t} is not installed: left out (pip install 'sae-kit[bench]')")
    print(f"load average before: {os.getloadavg()}, OMP_NUM_THREADS="
          f"{os.environ.get('OMP_NUM_THREADS', 'unset')}")
    results: dict[str, dict[str, dict[str, list[dict]]]] = {}
    for shape in args.shapes.split(","):
        for r in range(args.rounds):
            for allocator in ("shipped",) if args.device != "cpu" else ("shipped", "matched"):
                for tool in tools:
                    if allocator == "matched" and tool == "sae-kit":
                        continue  # the same setting as shipped
                    got = run_child(tool, shape, allocator, args)
                    results.setdefault(shape, {}).setdefault(allocator, {}).setdefault(
                        tool, []).append(got)
                    print(f"{shape} round {r + 1} {allocator:>8} {tool:>9}: "
                          f"{got['cpu'] * 1e3:7.1f} ms CPU, {got['wall'] * 1e3:7.1f} ms wall",
                          flush=True)
    print(f"load average after: {os.getloadavg()}")
    table = []
    for shape, by_alloc in results.items():
        ours = by_alloc["shipped"]["sae-kit"]
        ref_cpu = statistics.median(g["cpu"] for g in ours)
        ref_wall = statistics.median(g["wall"] for g in ours)
        for allocator, by_tool in by_alloc.items():
            for tool, got in by_tool.items():
                if tool == "sae-kit":
                    continue
                cpu = statistics.median(g["cpu"] for g in got)
                wall = statistics.median(g["wall"] for g in got)
                table.append({"shape": shape, "peer": tool, "allocator": allocator,
                              "speedup_cpu": cpu / ref_cpu, "speedup_wall": wall / ref_wall})
                print(f"{shape:>10} vs {tool:>8} ({allocator:>7}): sae-kit is "
                      f"{cpu / ref_cpu:.2f}x by CPU time, {wall / ref_wall:.2f}x by wall time")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"results": results, "ratios": table}, f, indent=1)


if __name__ == "__main__":
    main()
