"""Each architecture's SAE training step against topk's, at the e2e benchmark's shapes.

    python benchmarks/bench_arch_step.py                          # CPU, both shapes
    python benchmarks/bench_arch_step.py --shapes builtin --k 64 --reps 9

For each shape (tokens, d_model, n_dict of bench_e2e_step.py's SAEs, dictionary ratio 60), one
batch of Gaussian inputs and, per architecture, the step the trainer takes for an SAE under any
loss: forward in training mode, the loss's SAE terms (``Loss.sae_terms``: lambda's penalty, AuxK,
Matryoshka's prefixes), backward from a fixed random upstream gradient, gradient clipping and
fused Adam at learning rate 0 (so the weights, and the sparsity, stay as set). Every SAE has the
same weights and about the same L0: k for the TopK family (batchtopk: k on average), and for
jumprelu one threshold for all latents set to give mean L0 k on this batch. AuxK variants have
a fixed random ``--dead`` fraction of their latents dead before each step (its token counter set
past ``dead_tokens``, outside the timing), so AuxK does the work it does in a run with that many
dead latents (``dead`` column: the fraction the step saw). Repetitions are interleaved; the
ratio is the median of each architecture's time over topk's in the same repetition (> 1: slower
than topk).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from bench_sparse_sae import SHAPES
from saes import add_step_args, optimizer_step, step_device

from sae_kit import plugins
from sae_kit.architectures.base import SAE
from sae_kit.losses.local import LocalLoss
from sae_kit.model.hookpoints import HookPoint
from sae_kit.train import precision

HOOK = HookPoint(1)


DEAD_TOKENS = 1_000_000


def variants(k: int) -> dict[str, tuple[str, dict]]:
    aux = {"auxk": True, "dead_tokens": DEAD_TOKENS}
    return {
        "topk": ("topk", {"k": k}),
        "batchtopk": ("batchtopk", {"k": k}),
        "jumprelu": ("jumprelu", {}),
        "matryoshka": ("matryoshka", {"k": k}),
        "topk+auxk": ("topk", {"k": k, **aux}),
        "batchtopk+auxk": ("batchtopk", {"k": k, **aux}),
        "matryoshka+auxk": ("matryoshka", {"k": k, **aux}),
    }


def build(arch: str, options: dict, base: SAE, x: torch.Tensor, k: int) -> SAE:
    sae = plugins.load("architectures", arch)(base.d_in, base.n_dict, **options).to(x.device)
    sae.load_state_dict(base.state_dict(), strict=False)  # same weights; own buffers kept
    if arch == "jumprelu":
        with torch.no_grad():  # one threshold: the (k * tokens)-th largest pre-activation
            pre = x @ sae.W_enc.T + sae.b_enc
            theta = pre.reshape(-1).topk(k * x.shape[0]).values[-1].clamp_min(1e-6)
            sae.log_threshold.fill_(theta.log().item())
    return sae.train()


def step(sae: SAE, loss: LocalLoss, optimizer, x: torch.Tensor, upstream: torch.Tensor) -> None:
    out = sae(x)
    total, _ = loss.sae_terms(HOOK, sae, out)
    ((out.output * upstream).sum() + total).backward()
    optimizer_step(sae, optimizer)


def kill(sae: SAE, dead: torch.Tensor) -> None:
    """Make exactly the latents in ``dead`` dead for the next step (AuxK variants only)."""
    if hasattr(sae, "tokens_since_fired"):
        sae.tokens_since_fired.zero_().masked_fill_(dead, DEAD_TOKENS)


def bench(shape: str, k: int, dead_fraction: float, reps: int, device: torch.device) -> None:
    tokens, d_model, n_dict = SHAPES[shape]
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(tokens, d_model, generator=gen).to(device)
    upstream = (torch.randn(tokens, d_model, generator=gen) * 1e-3).to(device)
    torch.manual_seed(0)
    base = plugins.load("architectures", "topk")(d_model, n_dict, k=k).to(device)
    saes = {name: build(arch, opts, base, x, k) for name, (arch, opts) in variants(k).items()}
    opts = {n: precision.adam(list(s.parameters()), lr=0.0) for n, s in saes.items()}
    losses = {n: LocalLoss(1.0 if n == "jumprelu" else 0.0) for n in saes}
    times: dict[str, list[float]] = {n: [] for n in saes}
    names = list(saes)
    dead = torch.rand(n_dict, generator=gen).to(device) < dead_fraction
    for rep in range(reps + 1):
        for name in names if rep % 2 == 0 else names[::-1]:
            kill(saes[name], dead)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            step(saes[name], losses[name], opts[name], x, upstream)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            if rep:  # the first round is a warm-up
                times[name].append(time.perf_counter() - start)
    print(f"\n{shape}: {tokens} tokens, d_model {d_model}, n_dict {n_dict}, k {k}; "
          f"AuxK with {dead_fraction:.0%} dead; median of {reps}")
    print(f"{'architecture':16} {'L0':>7} {'dead':>6} {'median s':>9} {'vs topk':>8}")
    for name, sae in saes.items():
        kill(sae, dead)
        with torch.no_grad():
            out = sae(x)  # training mode: the codes the step trains on
        l0 = float((out.codes != 0).sum(-1).float().mean())
        seen = out.logs.get("dead_fraction")
        ratio = statistics.median([t / b for t, b in zip(times[name], times["topk"],
                                                         strict=True)])
        print(f"{name:16} {l0:>7.1f} {'-' if seen is None else f'{float(seen):.3f}':>6} "
              f"{statistics.median(times[name]):>9.4f} {ratio:>7.2f}x")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--shapes", default="builtin,gpt2-small", help="comma-separated")
    p.add_argument("--k", type=int, default=32, help="mean active latents per token")
    p.add_argument("--dead", type=float, default=0.1,
                   help="fraction of dead latents for the AuxK variants")
    add_step_args(p)
    args = p.parse_args()
    device = step_device(args)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {device}")
    for shape in args.shapes.split(","):
        bench(shape, args.k, args.dead, args.reps, device)


if __name__ == "__main__":
    main()
