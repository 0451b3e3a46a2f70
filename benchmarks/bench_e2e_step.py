"""Speed and memory of one e2e training step: sae-kit against a naive, reference-style step.

    python benchmarks/bench_e2e_step.py                                # CPU, fp32, both models
    python benchmarks/bench_e2e_step.py --device cuda --dtype bf16     # on a GPU

For each model and each SAE sparsity (--l0: "init", a fresh SAE with about half its codes on,
and "typical", the L0 of a trained SAE, set by shifting the encoder bias), on one batch, in one
process, interleaved after a warm-up (medians of wall time and, on CPU, of the process's CPU
time, which a core shared with other jobs inflates less):

- naive: what the reference implementation (e2e_sae) does each step: a full clean forward to
  full logits, a second full forward with its dense SAE (benchmarks/saes.py) spliced in by a
  hook (so every layer before the SAE runs twice), full-vocabulary log_softmax KL; always fp32,
  TF32 off;
- sae-kit: the `e2e` loss plugin on a `Splice`, exactly as the trainer's step runs it (under
  `--dtype`), i.e. a spliced pass from the SAE's layer on, the chunked KL, and the SAE's sparse
  kernels where its codes are sparse enough;
- the lower bound's three parts, each timed alone: the clean forward (no grad); the forward
  from the SAE's layer on, given its input, the KL (sae-kit's chunked one; it against the plain
  one: benchmarks/bench_kl_chunks.py) and the backward to that input; the SAE's forward and
  backward with the optimizer step.

Both steps end with the trainer's gradient clipping and Adam step (learning rate 0, so the
weights and the L0 stay as set), and their SAEs have the same weights. The SAE sits at
resid_pre of the middle layer. Peak memory of the KL part (logits, softmaxes, KL, its backward)
is measured at --kl-tokens tokens (benchmarks/kl_memory.py).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from kl_memory import kl_peaks
from saes import ReferenceSAE, measure_l0, optimizer_step, set_l0
from torch import nn

from sae_kit import plugins
from sae_kit.architectures import sparse
from sae_kit.architectures.relu import ReluSAE
from sae_kit.builtin import builtin_model_dir
from sae_kit.losses.chunked_kl import DEFAULT_CHUNK, chunked_kl
from sae_kit.model.hookpoints import HookPoint
from sae_kit.model.loading import adapter_for
from sae_kit.model.splice import ModelRunner, Splice
from sae_kit.train import precision

# (batch, context) per model and device: small enough that a CPU run takes minutes.
SHAPES = {("builtin", "cpu"): (8, 256), ("gpt2-small", "cpu"): (2, 256),
          ("builtin", "cuda"): (32, 256), ("gpt2-small", "cuda"): (8, 1024)}
# Tokens for the KL memory measurement: about 1e8 logits per [tokens, vocab] tensor (0.4 GB).
KL_TOKENS = {"builtin": 16384, "gpt2-small": 2048}
# "typical" L0: the built-in model's default `sae-kit train` run ends at L0 134-142
# (docs/method.md); for the GPT-2-small shape 32, the topk architecture's default k and an L0 in
# the range SAEs on GPT-2 small are trained to (--l0 N benchmarks others).
TYPICAL_L0 = {"builtin": 140.0, "gpt2-small": 32.0}
SPARSITY_COEFF = 1.0


def build_model(name: str) -> tuple[nn.Module, str]:
    """The frozen model and a description of it."""
    from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    if name == "builtin" and (builtin_model_dir() / "config.json").exists():
        model = AutoModelForCausalLM.from_pretrained(builtin_model_dir(), dtype=torch.float32)
        what = "built-in sae-kit-tiny"
    elif name in ("builtin", "gpt2-small"):
        shape = (dict(n_layer=4, n_embd=128, n_head=4, vocab_size=4096, n_positions=256)
                 if name == "builtin" else
                 dict(n_layer=12, n_embd=768, n_head=12, vocab_size=50257, n_positions=1024))
        torch.manual_seed(0)
        model = GPT2LMHeadModel(GPT2Config(**shape, bos_token_id=0, eos_token_id=0))
        what = ("random GPT-2 shaped like the built-in model (not shipped yet)"
                if name == "builtin" else "random GPT-2-small-shaped")
    else:
        raise SystemExit(f"unknown model {name!r}; use builtin or gpt2-small")
    cfg = model.config
    what += f": {cfg.n_layer} layers, d_model {cfg.n_embd}, vocab {cfg.vocab_size}"
    return model.eval().requires_grad_(False), what


@dataclass
class Setup:
    model: nn.Module
    runner: ModelRunner
    layer: int
    ids: torch.Tensor
    device: torch.device
    dtype: str
    kl_chunk: int


def naive_step(s: Setup, sae: ReferenceSAE, optimizer: torch.optim.Optimizer) -> None:
    """Two full forwards, full logits, full-vocabulary KL, fp32: the reference's step."""
    with torch.no_grad():
        clean_logits = s.model(input_ids=s.ids, use_cache=False).logits
    codes = {}

    def splice_in(module: nn.Module, args: tuple, kwargs: dict):
        out = sae(args[0] if args else kwargs["hidden_states"])
        codes["c"] = out.codes
        if args:
            return (out.output, *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": out.output}

    handle = s.runner.layers[s.layer].register_forward_pre_hook(splice_in, with_kwargs=True)
    try:
        new_logits = s.model(input_ids=s.ids, use_cache=False).logits
    finally:
        handle.remove()
    vocab = new_logits.shape[-1]
    kl = F.kl_div(F.log_softmax(new_logits.reshape(-1, vocab), dim=-1),
                  F.log_softmax(clean_logits.reshape(-1, vocab), dim=-1),
                  log_target=True, reduction="batchmean")
    (kl + SPARSITY_COEFF * sae.sparsity_penalty(codes["c"])).backward()
    optimizer_step(sae, optimizer)


def sae_kit_step(s: Setup, splice: Splice, loss: object, optimizer) -> None:
    with precision.autocast(s.device, s.dtype):
        result = loss(splice, s.ids)  # type: ignore[operator]
    result.loss.backward()
    optimizer_step(next(iter(splice.saes.values())), optimizer)


def lower_bound_parts(s: Setup, sae: ReluSAE, optimizer) -> dict[str, Callable[[], None]]:
    """The work no e2e step can avoid, as three separately timed functions.

    clean: the original model to its final hidden states, no grad. downstream: the layers from
    the SAE's on, given its input, then the KL (both unembeddings, chunked) and the backward to
    that input. sae: the SAE's forward and backward, and the optimizer step.
    """
    with torch.no_grad(), precision.autocast(s.device, s.dtype):
        run = s.runner.run(s.ids, capture=[s.layer])
        act, clean_final = run.acts[s.layer], run.final_hidden
    upstream = torch.randn_like(act, dtype=torch.float32) * 1e-3
    head = s.runner.unembed

    def clean() -> None:
        with torch.no_grad(), precision.autocast(s.device, s.dtype):
            s.runner.run(s.ids)

    def downstream() -> None:
        x = act.detach().requires_grad_()
        with precision.autocast(s.device, s.dtype):
            final = s.runner.run(s.ids, start=(s.layer, x)).final_hidden
            kl = chunked_kl(clean_final, final, head.weight, head.bias, s.kl_chunk)
        kl.backward()

    def sae_part() -> None:
        out = sae(act)
        ((out.output * upstream).sum() + SPARSITY_COEFF * sae.sparsity_penalty(out.codes)
         ).backward()
        optimizer_step(sae, optimizer)

    return {"clean": clean, "downstream": downstream, "sae": sae_part}


@contextlib.contextmanager
def sae_kit_backends(device: torch.device) -> Iterator[None]:
    """TF32 on CUDA for sae-kit's runs only; the naive step keeps PyTorch's default (off)."""
    if device.type != "cuda":
        yield
        return
    matmul = torch.backends.cuda.matmul
    attr = "fp32_precision" if hasattr(matmul, "fp32_precision") else "allow_tf32"
    before = getattr(matmul, attr)
    precision.configure_backends(device)
    try:
        yield
    finally:
        setattr(matmul, attr, before)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved(variants: dict[str, Callable[[], None]], reps: int, warmup: int,
                device: torch.device) -> dict[str, dict[str, list[float]]]:
    """Times of each variant, repetitions interleaved so that load drifts hit all alike.

    Returns {"wall": {name: seconds...}} and, on CPU, also {"cpu": ...}: the process's CPU
    time, which waiting for a core shared with other jobs does not inflate (much).
    """
    names = list(variants)
    for _ in range(warmup):
        for name in names:
            variants[name]()
    clocks = {"wall": time.perf_counter}
    if device.type != "cuda":
        clocks["cpu"] = time.process_time
    times = {clock: {name: [] for name in names} for clock in clocks}
    for rep in range(reps):
        # A, B, ... then ..., B, A: naive and sae-kit always run back to back, and a load
        # that rises or falls steadily costs both the same over two repetitions.
        for name in names if rep % 2 == 0 else names[::-1]:
            _sync(device)
            start = {clock: read() for clock, read in clocks.items()}
            variants[name]()
            _sync(device)
            for clock, read in clocks.items():
                times[clock][name].append(read() - start[clock])
    return times


def step_peaks(steps: dict[str, Callable[[], None]], device: torch.device) -> dict[str, int]:
    """CUDA only: peak allocated memory of one whole step above what was held before it."""
    peaks = {}
    for name, step in steps.items():
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        step()
        torch.cuda.synchronize(device)
        peaks[name] = torch.cuda.max_memory_allocated(device) - base
    return peaks


# ---- one model, and the report ------------------------------------------------------------


def bench_model(name: str, args: argparse.Namespace, device: torch.device) -> list[dict]:
    model, what = build_model(name)
    model.to(device)
    adapter = adapter_for(model.config.model_type)
    runner = ModelRunner(model, adapter)
    layer, d_model = runner.n_layers // 2, adapter.d_model(model)
    batch, context = SHAPES[(name, device.type)]
    batch, context = args.batch or batch, min(args.context or context, model.config.n_positions)
    ids = torch.randint(0, model.config.vocab_size, (batch, context),
                        generator=torch.Generator().manual_seed(1)).to(device)
    s = Setup(model, runner, layer, ids, device, args.dtype, args.kl_chunk)
    kl_tokens = args.kl_tokens or KL_TOKENS[name]
    common = {
        "model": name, "description": what, "hook_point": HookPoint(layer).name,
        "dict_ratio": args.dict_ratio, "batch": batch, "context": context,
        "tokens": batch * context, "dtype": args.dtype, "kl_chunk": args.kl_chunk,
        "kl_peak_bytes": kl_peaks(kl_tokens, model.config.vocab_size, d_model, args.kl_chunk,
                                  device),
        "kl_tokens": kl_tokens, "vocab": model.config.vocab_size,
    }
    results = []
    for l0 in args.l0.split(","):
        result = {**common, **bench_sparsity(s, adapter, d_model, l0, name, args)}
        report(result, args)
        results.append(result)
    return results


def bench_sparsity(s: Setup, adapter, d_model: int, l0: str, name: str,
                   args: argparse.Namespace) -> dict:
    """Time naive, sae-kit and the lower bound with an SAE of the L0 that ``l0`` names."""
    torch.manual_seed(0)
    first = ReluSAE(d_model, round(args.dict_ratio * d_model)).to(s.device)
    with torch.no_grad():
        act = s.runner.run(s.ids, capture=[s.layer]).acts[s.layer]
    if l0 != "init":
        set_l0(first, act, TYPICAL_L0[name] if l0 == "typical" else float(l0))
    saes = {"naive": ReferenceSAE(first), "sae-kit": first, "bound": copy.deepcopy(first)}
    # Learning rate 0: Adam does all its work, and the weights (so the L0) stay as set.
    opts = {k: precision.adam(list(sae.parameters()), lr=0.0) for k, sae in saes.items()}
    splice = Splice(s.model, adapter, {HookPoint(s.layer): saes["sae-kit"]})
    loss = plugins.load("losses", "e2e")(SPARSITY_COEFF, kl_chunk=args.kl_chunk)

    def with_backends(fn: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            with sae_kit_backends(s.device):
                fn()
        return run

    with sae_kit_backends(s.device):
        bound = lower_bound_parts(s, saes["bound"], opts["bound"])
    steps = {"naive": lambda: naive_step(s, saes["naive"], opts["naive"]),
             "sae-kit": with_backends(lambda: sae_kit_step(s, splice, loss, opts["sae-kit"]))}
    variants = {**steps, **{f"bound/{k}": with_backends(fn) for k, fn in bound.items()}}
    times = interleaved(variants, args.reps, args.warmup, s.device)
    measured = {k: measure_l0(saes[k], act) for k in ("naive", "sae-kit")}
    result = {"l0_setting": l0, "l0": measured, "n_dict": first.n_dict,
              "sparse_max_density": sparse.sparse_max_density(s.device), "times_s": times}
    if s.device.type == "cuda":
        result["step_peak_bytes"] = step_peaks(steps, s.device)
    return result


def _gb(n: int | None) -> str:
    return "n/a" if n is None else f"{n / 2**30:.3f} GB"


def report(r: dict, args: argparse.Namespace) -> None:
    print(f"\n== {r['model']}: {r['description']}")
    print(f"   SAE at {r['hook_point']}, n_dict {r['n_dict']} (ratio {r['dict_ratio']:g}); "
          f"batch {r['batch']} x {r['context']} = {r['tokens']} tokens; naive fp32, sae-kit "
          f"{r['dtype']}; {args.threads or torch.get_num_threads()} threads; median of "
          f"{args.reps} after {args.warmup} warm-up")
    l0 = r["l0"]["sae-kit"]
    density = l0 / r["n_dict"]
    path = "sparse" if density <= r["sparse_max_density"] else "dense"
    print(f"   SAE sparsity: {r['l0_setting']}, L0 {l0:.1f} (density {density:.4f}; naive's SAE "
          f"L0 {r['l0']['naive']:.1f}); sae-kit's SAE runs its {path} kernels")
    for clock, times in r["times_s"].items():
        report_clock(clock, times, r["tokens"])
    kl = r["kl_peak_bytes"]
    ratio = f" = {kl['sae-kit'] / kl['naive']:.3f}x naive" if None not in kl.values() else ""
    print(f"   KL peak memory at {r['kl_tokens']} tokens x {r['vocab']} vocab: naive "
          f"{_gb(kl['naive'])}, sae-kit (chunk {r['kl_chunk']}) {_gb(kl['sae-kit'])}{ratio}")
    if "step_peak_bytes" in r:
        step = r["step_peak_bytes"]
        print(f"   whole-step peak memory: naive {_gb(step['naive'])}, "
              f"sae-kit {_gb(step['sae-kit'])}")


def report_clock(clock: str, times: dict[str, list[float]], tokens: int) -> None:
    med = {k: statistics.median(v) for k, v in times.items()}
    bound = {k.split("/")[1]: v for k, v in med.items() if k.startswith("bound/")}
    lower = sum(bound.values())
    paired = statistics.median([n / k for n, k in zip(times["naive"], times["sae-kit"],
                                                      strict=True)])
    low = {k: min(v) for k, v in times.items()}
    print(f"   {clock + ' time':12}{'median s':>10}{'tokens/s':>11}{'vs naive':>10}   |"
          f"{'min s':>8}{'vs naive':>10}")
    for name in ("naive", "sae-kit"):
        print(f"   {name:12}{med[name]:>10.3f}{tokens / med[name]:>11,.1f}"
              f"{med['naive'] / med[name]:>9.2f}x   |{low[name]:>8.3f}"
              f"{low['naive'] / low[name]:>9.2f}x")
    parts = " + ".join(f"{k} {v:.3f}" for k, v in bound.items())
    print(f"   {'lower bound':12}{lower:>10.3f}  = {parts}")
    print(f"   sae-kit / lower bound {med['sae-kit'] / lower:.2f}x; naive / lower bound "
          f"{med['naive'] / lower:.2f}x; naive / sae-kit in back-to-back pairs, median "
          f"{paired:.2f}x")


def describe_machine(device: torch.device) -> str:
    if device.type == "cuda":
        where = torch.cuda.get_device_name(device)
    else:
        names = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text()
                 .splitlines() if line.startswith("model name")] if Path("/proc/cpuinfo").exists() \
            else [platform.processor()]
        where = f"{names[0] if names else 'unknown CPU'}, {torch.get_num_threads()} threads"
    return f"{where}; torch {torch.__version__}; Python {platform.python_version()}"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", default="builtin,gpt2-small", help="comma-separated")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--dtype", default="fp32", choices=["fp32", "bf16"], help="sae-kit's dtype")
    p.add_argument("--dict-ratio", type=float, default=60.0, help="n_dict / d_model")
    p.add_argument("--batch", type=int, default=None, help="default: per model and device")
    p.add_argument("--context", type=int, default=None, help="default: per model and device")
    p.add_argument("--reps", type=int, default=5, help="timed repetitions of each variant")
    p.add_argument("--warmup", type=int, default=1, help="untimed repetitions first")
    p.add_argument("--threads", type=int, default=2, help="torch threads on CPU; 0: default")
    p.add_argument("--kl-chunk", type=int, default=DEFAULT_CHUNK, help="sae-kit's KL chunk")
    p.add_argument("--kl-tokens", type=int, default=None,
                   help="tokens for the KL memory; default: per model")
    p.add_argument("--l0", default="init,typical",
                   help="comma-separated SAE sparsities: init (fresh SAE), typical (per model: "
                        f"{TYPICAL_L0}), or a number")
    p.add_argument("--json", default=None, help="also write the results to this file")
    return p.parse_args(argv)


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"machine: {describe_machine(device)}")
    print(f"command: python {' '.join(sys.argv)}")
    results = [r for name in args.models.split(",") for r in bench_model(name, args, device)]
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": describe_machine(device),
                                               "results": results}, indent=1))


if __name__ == "__main__":
    main()
