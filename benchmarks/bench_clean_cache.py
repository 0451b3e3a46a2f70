"""An e2e step with and without the clean-pass cache (`sae-kit cache`), same run, interleaved.

    OMP_NUM_THREADS=1 python benchmarks/bench_clean_cache.py                 # both shapes
    python benchmarks/bench_clean_cache.py --models gpt2-small --steps 6

For each model (the built-in one, and a random GPT-2-small-shaped one: bench_e2e_step.py's
`build_model`), a TopK SAE (k 32, dictionary --dict-ratio x d_model, default 60) at the middle
layer's resid_pre and the `e2e` loss take the trainer's step (loss, backward, clipping, fused
Adam) on --batches distinct batches, once running the clean model and once reading the batch's
clean pass from a cache written beforehand (`sae_kit.train.clean_cache`, the code behind
`sae-kit cache`, in a temporary directory; its shards are in the page cache after the first
read, as in a run that reads them every epoch). The two alternate step by step; medians of CPU
and wall time per step; the ratio is uncached / cached. The loss and weights of both are
checked to be equal. The allocator is set up as the `sae-kit` command sets it (freed buffers
reused: `sae_kit.train.malloc`), before torch loads.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from sae_kit.train.malloc import configure

configure()  # the command's allocator settings; before torch allocates anything

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))
from bench_e2e_step import SHAPES, build_model  # noqa: E402

from sae_kit import plugins  # noqa: E402
from sae_kit.architectures.topk import TopKSAE  # noqa: E402
from sae_kit.model.hookpoints import HookPoint  # noqa: E402
from sae_kit.model.loading import adapter_for  # noqa: E402
from sae_kit.model.splice import Splice  # noqa: E402
from sae_kit.train import precision  # noqa: E402
from sae_kit.train.clean_cache import CachedClean, CacheKey, clean_needs, write_cache  # noqa: E402


def step(splice: Splice, loss: object, optimizer: torch.optim.Optimizer, ids: torch.Tensor
         ) -> float:
    result = loss(splice, ids)
    result.loss.backward()
    params = [p for g in optimizer.param_groups for p in g["params"]]
    torch.nn.utils.clip_grad_norm_(params, 10.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    if splice.shared is not None:
        splice.shared.clear()
    return float(result.loss.detach())


def bench(name: str, args: argparse.Namespace, tmp: Path) -> dict:
    model, what = build_model(name)
    batch, context = SHAPES[(name, "cpu")]
    adapter = adapter_for(model)
    d_model, n_layers = adapter.d_model(model), len(adapter.layers(model))
    hp = HookPoint(n_layers // 2)
    gen = torch.Generator().manual_seed(0)
    windows = torch.randint(0, model.config.vocab_size, (args.batches * batch, context),
                            generator=gen)
    torch.manual_seed(0)
    n_dict = round(args.dict_ratio * d_model)
    saes = {kind: {hp: TopKSAE(d_model, n_dict, k=32)} for kind in ("live", "cached")}
    saes["cached"][hp].load_state_dict(saes["live"][hp].state_dict())
    loss = plugins.load("losses", "e2e")(1.0)
    splices = {kind: Splice(model, adapter, s) for kind, s in saes.items()}
    key = CacheKey(model=name, revision=None, model_type="gpt2", unembedding_sha256="-",
                   dataset="random", split="train", text_column="text", context=context,
                   dtype="fp32")
    needs = clean_needs(loss, splices["cached"])
    cache_dir = tmp / name
    t0 = time.perf_counter()
    index = write_cache(cache_dir, key, splices["cached"], windows.tolist(), len(windows),
                        *needs, batch, torch.device("cpu"))
    write_s = time.perf_counter() - t0
    splices["cached"].share_clean(CachedClean(splices["cached"], cache_dir, key, needs))
    opts = {k: precision.adam(list(s[hp].parameters()), lr=0.0) for k, s in saes.items()}
    times: dict[str, dict[str, list[float]]] = {k: {"cpu": [], "wall": []} for k in saes}
    for i in range(args.warmup + args.steps):
        ids = windows[(i % args.batches) * batch:][:batch]
        losses = {}
        for kind in (("live", "cached") if i % 2 == 0 else ("cached", "live")):
            c, w = time.process_time(), time.perf_counter()
            losses[kind] = step(splices[kind], loss, opts[kind], ids)
            if i >= args.warmup:
                times[kind]["cpu"].append(time.process_time() - c)
                times[kind]["wall"].append(time.perf_counter() - w)
        if losses["live"] != losses["cached"]:
            raise SystemExit(f"{name}: cached loss {losses['cached']} != live {losses['live']}")
    for p, q in zip(saes["live"][hp].parameters(), saes["cached"][hp].parameters(), strict=True):
        if not torch.equal(p, q):
            raise SystemExit(f"{name}: the cached run's weights differ from the live run's")
    med = {k: {m: statistics.median(v) for m, v in t.items()} for k, t in times.items()}
    return {"model": what, "tokens_per_step": batch * context, "write_s": write_s,
            "bytes_per_token": index["bytes_per_token"], "live": med["live"],
            "cached": med["cached"], "hits": splices["cached"].shared.hits}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default="builtin,gpt2-small")
    p.add_argument("--steps", type=int, default=8)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--batches", type=int, default=4)
    p.add_argument("--dict-ratio", type=float, default=60.0)
    args = p.parse_args()
    print(f"load average before: {os.getloadavg()}, torch threads {torch.get_num_threads()}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            r = bench(name, args, Path(tmp))
            live, cached = r["live"], r["cached"]
            print(f"{name}: {r['model']}; SAE ratio {args.dict_ratio:g}; "
                  f"{r['tokens_per_step']} tokens per step; cache "
                  f"{r['bytes_per_token']:,.0f} bytes per token, written in {r['write_s']:.1f} s")
            print(f"  live   step: {live['cpu'] * 1e3:8.1f} ms CPU, "
                  f"{live['wall'] * 1e3:8.1f} ms wall")
            print(f"  cached step: {cached['cpu'] * 1e3:8.1f} ms CPU, "
                  f"{cached['wall'] * 1e3:8.1f} ms wall ({r['hits']} batches read)")
            print(f"  speed-up with the cache: {live['cpu'] / cached['cpu']:.2f}x by CPU time, "
                  f"{live['wall'] / cached['wall']:.2f}x by wall time; same loss and weights")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
