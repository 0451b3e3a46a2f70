"""The SAE's own training step with sparse kernels against dense matmuls, by L0.

    python benchmarks/bench_sparse_sae.py                      # CPU, both shapes
    python benchmarks/bench_sparse_sae.py --shapes gpt2-small --l0 16,64,256

For each shape and L0, one process: a ReLU SAE whose encoder bias is shifted to that L0
(benchmarks/saes.py), one batch of Gaussian inputs, and the step the trainer takes for it:
forward, L1 penalty, backward from a fixed random upstream gradient, gradient clipping, fused
Adam. Dense (sparse kernels off) and sparse (kernels always on) run interleaved; the printed
ratio is dense time over sparse time (> 1: the sparse kernels are faster), which is what sets
``sae_kit.architectures.sparse.MAX_DENSITY``.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
from saes import add_step_args, optimizer_step, set_l0, sparse_kernels, step_device

from sae_kit.architectures.relu import ReluSAE
from sae_kit.train import precision

# (tokens, d_model, n_dict): the e2e benchmark's SAEs (bench_e2e_step.py, ratio 60).
SHAPES = {"builtin": (2048, 128, 7680), "gpt2-small": (512, 768, 46080)}


def sae_step(sae: ReluSAE, optimizer, x: torch.Tensor, upstream: torch.Tensor) -> None:
    out = sae(x)
    ((out.output * upstream).sum() + sae.sparsity_penalty(out.codes)).backward()
    optimizer_step(sae, optimizer)


def bench(shape: str, l0: float, reps: int, device: torch.device) -> None:
    tokens, d_model, n_dict = SHAPES[shape]
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(tokens, d_model, generator=gen).to(device)
    upstream = (torch.randn(tokens, d_model, generator=gen) * 1e-3).to(device)
    torch.manual_seed(0)
    first = ReluSAE(d_model, n_dict).to(device)
    measured = set_l0(first, x, l0)
    saes = {"dense": first, "sparse": copy.deepcopy(first)}
    # lr 0: the weights, and so the L0, stay as set while the step does all its work.
    opts = {k: precision.adam(list(s.parameters()), lr=0.0) for k, s in saes.items()}
    limits = {"dense": 0.0, "sparse": 1.0}
    times: dict[str, list[float]] = {k: [] for k in saes}
    for rep in range(reps + 1):
        for name in saes if rep % 2 == 0 else list(saes)[::-1]:
            with sparse_kernels(device, limits[name]):
                start = time.perf_counter()
                sae_step(saes[name], opts[name], x, upstream)
                if device.type == "cuda":
                    torch.cuda.synchronize(device)
                if rep:  # the first round is a warm-up
                    times[name].append(time.perf_counter() - start)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"{shape:11} {tokens:>6} {d_model:>5} {n_dict:>6} {measured:>7.1f} "
          f"{measured / n_dict:>8.4f} {med['dense']:>9.4f} {med['sparse']:>9.4f} "
          f"{med['dense'] / med['sparse']:>7.2f}x")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--shapes", default="builtin,gpt2-small", help="comma-separated")
    p.add_argument("--l0", default="16,32,64,128,256,512,1024,2048", help="comma-separated")
    add_step_args(p)
    args = p.parse_args()
    device = step_device(args)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {device}; "
          f"median of {args.reps}")
    print(f"{'shape':11} {'tokens':>6} {'d':>5} {'n_dict':>6} {'L0':>7} {'density':>8} "
          f"{'dense s':>9} {'sparse s':>9} {'speed-up':>8}")
    for shape in args.shapes.split(","):
        for l0 in args.l0.split(","):
            bench(shape, float(l0), args.reps, device)


if __name__ == "__main__":
    main()
