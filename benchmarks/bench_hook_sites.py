"""Speed of one e2e training step with the SAE inside a layer, against the residual stream.

    python benchmarks/bench_hook_sites.py                       # CPU, built-in model, fp32
    python benchmarks/bench_hook_sites.py --device cuda --models builtin,gpt2-small

The same `e2e` step the trainer runs (loss plugin on a `Splice`, backward, clip, Adam with
learning rate 0 so the weights stay as initialised) with one fresh ReLU SAE of the same shape
at ``blocks.L.hook_resid_pre`` and at ``blocks.L.hook_mlp_out`` of the middle layer L. Both
spliced passes start from the clean residual at layer L's input, so the work differs only by
the hooks on the MLP and by where the SAE's output enters (after layer L's attention instead of
before it). Repetitions are interleaved, A B then B A; reported: medians, the ratio of medians
(mlp_out / resid_pre) and the median of back-to-back ratios, on wall and process CPU time.
"""

from __future__ import annotations

import argparse
import statistics
import sys

import torch
from bench_e2e_step import SHAPES, build_model, describe_machine, interleaved
from saes import optimizer_step

from sae_kit import plugins
from sae_kit.architectures.relu import ReluSAE
from sae_kit.model.hookpoints import HookPoint
from sae_kit.model.loading import adapter_for
from sae_kit.model.splice import ModelRunner, Splice
from sae_kit.train import precision

KINDS = ("resid_pre", "mlp_out")


def step_for(model, adapter, hook_point: HookPoint, d_model: int, n_dict: int,
             ids: torch.Tensor, device: torch.device):
    """One e2e step with a fresh seeded SAE at ``hook_point``, as a function to time."""
    torch.manual_seed(0)
    sae = ReluSAE(d_model, n_dict).to(device)
    optimizer = precision.adam(list(sae.parameters()), lr=0.0)
    splice = Splice(model, adapter, {hook_point: sae})
    loss = plugins.load("losses", "e2e")(1.0)

    def step() -> None:
        loss(splice, ids).loss.backward()
        optimizer_step(sae, optimizer)

    return step


def bench(name: str, args: argparse.Namespace, device: torch.device) -> None:
    model, what = build_model(name)
    model.to(device)
    adapter = adapter_for(model.config.model_type)
    layer = ModelRunner(model, adapter).n_layers // 2
    d_model = adapter.d_model(model)
    batch, context = SHAPES[(name, device.type)]
    ids = torch.randint(0, model.config.vocab_size, (batch, context),
                        generator=torch.Generator().manual_seed(1)).to(device)
    n_dict = round(args.dict_ratio * d_model)
    steps = {kind: step_for(model, adapter, HookPoint(layer, kind), d_model, n_dict, ids, device)
             for kind in KINDS}
    times = interleaved(steps, args.reps, args.warmup, device)
    print(f"\n== {name}: {what}")
    print(f"   SAE at layer {layer}, n_dict {n_dict}; batch {batch} x {context}; median of "
          f"{args.reps} after {args.warmup} warm-up; {torch.get_num_threads()} threads")
    for clock, by_kind in times.items():
        med = {k: statistics.median(v) for k, v in by_kind.items()}
        paired = statistics.median([m / r for r, m in zip(by_kind["resid_pre"],
                                                          by_kind["mlp_out"], strict=True)])
        print(f"   {clock:5} resid_pre {med['resid_pre']:.3f} s, mlp_out {med['mlp_out']:.3f} s: "
              f"mlp_out / resid_pre {med['mlp_out'] / med['resid_pre']:.3f}x (ratio of "
              f"medians), {paired:.3f}x (median of back-to-back pairs)")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", default="builtin", help="comma-separated: builtin, gpt2-small")
    p.add_argument("--device", default="cpu")
    p.add_argument("--dict-ratio", type=float, default=60.0)
    p.add_argument("--reps", type=int, default=7)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=1, help="torch threads on CPU; 0: default")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    print(f"machine: {describe_machine(device)}")
    print(f"command: python {' '.join(sys.argv)}")
    for name in args.models.split(","):
        bench(name, args, device)


if __name__ == "__main__":
    main()
