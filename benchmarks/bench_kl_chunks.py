"""Time of the KL part (forward + backward) for several chunk sizes against the plain KL.

    python benchmarks/bench_kl_chunks.py                      # CPU, GPT-2's vocabulary
    python benchmarks/bench_kl_chunks.py --device cuda --tokens 8192

"plain" builds full [tokens, vocab] logits for both passes and runs
sae_kit.losses.kl.kl_divergence under autograd; the others run sae_kit's chunked_kl. Variants
are interleaved in rotating order after a warm-up; medians are printed with their ratio to
plain. Used to choose sae_kit.losses.chunked_kl.DEFAULT_CHUNK.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from sae_kit.losses.chunked_kl import chunked_kl
from sae_kit.losses.kl import kl_divergence


def variants(tokens: int, vocab: int, d_model: int, chunks: list[int],
             device: torch.device) -> dict[str, Callable[[], None]]:
    gen = torch.Generator().manual_seed(0)
    weight = (torch.randn(vocab, d_model, generator=gen) * 0.02).to(device)
    clean = torch.randn(tokens, d_model, generator=gen).to(device)
    spliced = (clean + 0.1 * torch.randn(tokens, d_model, generator=gen).to(device))
    spliced.requires_grad_()

    def plain() -> None:
        with torch.no_grad():
            clean_logits = F.linear(clean, weight)
        kl_divergence(clean_logits, F.linear(spliced, weight)).backward()
        spliced.grad = None

    def chunked(chunk: int) -> Callable[[], None]:
        def run() -> None:
            chunked_kl(clean, spliced, weight, None, chunk).backward()
            spliced.grad = None
        return run

    return {"plain": plain, **{f"chunk {c}": chunked(c) for c in chunks}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--tokens", type=int, default=2048)
    p.add_argument("--vocab", type=int, default=50257)
    p.add_argument("--d-model", type=int, default=768)
    p.add_argument("--chunks", default="128,256,512,1024,2048")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--threads", type=int, default=2, help="torch threads on CPU; 0: default")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    runs = variants(args.tokens, args.vocab, args.d_model,
                    [int(c) for c in args.chunks.split(",")], device)
    names = list(runs)
    times: dict[str, list[float]] = {name: [] for name in names}
    for name in names:
        runs[name]()  # warm-up
    for rep in range(args.reps):
        for name in names[rep % len(names):] + names[:rep % len(names)]:
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            start = time.perf_counter()
            runs[name]()
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times[name].append(time.perf_counter() - start)
    plain = statistics.median(times["plain"])
    print(f"{args.tokens} tokens x {args.vocab} vocab, d_model {args.d_model}, {device}, "
          f"torch {torch.__version__}, median of {args.reps}")
    for name in names:
        median = statistics.median(times[name])
        print(f"  {name:12}{median:9.3f} s  {median / plain:6.2f}x plain")


if __name__ == "__main__":
    main()
