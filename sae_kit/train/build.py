"""Build a :class:`~sae_kit.train.run.Run` from a TrainConfig, one small step per job.

    run = build_run(TrainConfig(loss="e2e", hook_points=["blocks.2.hook_resid_pre"]))

The config given is never changed: :func:`resolve_defaults` and :func:`resolve_hook_points`
return resolved copies, and the run holds the final one (what config.json records). Every input
error surfaces here, before any training output.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from sae_kit import plugins
from sae_kit.architectures.base import SAE
from sae_kit.architectures.factory import seeded_saes
from sae_kit.data import training_batches
from sae_kit.errors import SaeKitError, counted, warn_stderr
from sae_kit.losses.base import Loss
from sae_kit.model.device import resolve_device
from sae_kit.model.hookpoints import HookPoint
from sae_kit.model.loading import LoadedModel, load_model
from sae_kit.model.lora import Lora, LoraSpec
from sae_kit.model.splice import Splice
from sae_kit.record.config import MODEL_DEFAULTS, TrainConfig
from sae_kit.record.run_record import Resolved
from sae_kit.store.start_from import StartingPoint
from sae_kit.trackers.base import check_trackers
from sae_kit.train import distributed, precision
from sae_kit.train.clean_cache import open_cache
from sae_kit.train.distributed import Dist
from sae_kit.train.init_from import check_fits, resolve_start
from sae_kit.train.run import Run
from sae_kit.train.schedule import warmup_cosine


@dataclass(frozen=True)
class Sizes:
    """What the settings come to on one model and world size."""

    context: int
    n_samples: int
    total_steps: int
    warmup_steps: int
    n_dict: int


def build_run(config: TrainConfig, skip_windows: int = 0, share: Run | None = None) -> Run:
    """Load the model, make the SAEs, optimizer, schedule and data; validate everything first.

    Under torchrun this joins the process group; ``skip_windows`` (a resumed run) starts the
    data that many global windows in. ``share``: a run whose model, device and data stream this
    one uses too (runs trained in one pass, see ``sae_kit.train.group``).
    """
    config, start = resolve_start(config)  # --init-from: the source's SAE settings (lambda too)
    loss = make_loss(config)
    config = resolve_defaults(config, loss)
    check_trackers(config.trackers)  # before the model loads: a missing key is one line
    if share is None:
        dist, device = setup_device(config)
        loaded = load_model(config.model, revision=config.revision, device=device)
    else:
        dist, device, loaded = share.dist, share.device, share.loaded
    if start is not None:
        check_fits(start, loaded, config.model)
    config = resolve_hook_points(config, loaded)
    sizes = resolve_sizes(config, loaded, dist)
    widths = {name: loaded.width_at(HookPoint.parse(name)) for name in config.hook_points}
    outputs = transcoder_outputs(config)
    check_transcoder_widths(outputs, widths, loaded)
    saes = build_saes(config, widths, sizes.n_dict, device, start)
    lora = add_lora(config, loaded, saes, share is not None or dist.enabled)
    params = lora.parameters() if lora else [p for sae in saes.values() for p in sae.parameters()]
    optimizer, scheduler = make_optimizer(config, params, sizes)
    if share is None:
        data = make_data(config, loaded, sizes.context, config.skip_samples + skip_windows, dist)
    else:
        data = share.data
    resolved = Resolved(
        context=sizes.context, n_samples=sizes.n_samples, total_steps=sizes.total_steps,
        warmup_steps=sizes.warmup_steps, d_model=loaded.d_model, n_dict=sizes.n_dict,
        n_layers=loaded.n_layers, model_type=loaded.model.config.model_type,
        adapter=loaded.adapter.describe(loaded.model), device=str(device),
        world_size=dist.world_size,
        # Only where a module path's width is not d_model: other runs' records stay as they were.
        widths=widths if set(widths.values()) != {loaded.d_model} else {},
        init_from=None if start is None else start.record,
    )
    objective = distributed.data_parallel(loss, saes, dist, device)
    splice = Splice(loaded.model, loaded.adapter, saes, outputs)
    splice.lora = lora
    if config.clean_cache and share is None:  # a group's members share the lead's
        splice.share_clean(open_cache(splice, config, loaded, sizes.context, loss))
    return Run(config, resolved, loaded, saes, splice,
               objective, optimizer, scheduler, data, run_dir_for(config), device, dist,
               lora=lora)


def add_lora(config: TrainConfig, loaded: LoadedModel, saes: Mapping[HookPoint, SAE],
             shared: bool) -> Lora | None:
    """``--lora``: the SAEs frozen, adapters put into the model (none without --lora).

    The adapters' A is drawn after the SAEs from the seeded generator: same seed, same run."""
    if not config.lora:
        return None
    if shared:
        raise SaeKitError("--lora trains one run's adapters in one process: give one --lambda "
                          "and run it without torchrun")
    for sae in saes.values():
        sae.requires_grad_(False)
    spec = LoraSpec(rank=config.lora_rank, alpha=config.lora_alpha, layers=config.lora_layers,
                    targets=tuple(config.lora_targets))
    first = min(hp.start_position for hp in saes)
    return Lora.add(loaded.model, loaded.adapter, spec, first)


def resolve_defaults(config: TrainConfig, loss: Loss) -> TrainConfig:
    """A copy with the model-dependent defaults filled in and the plugin options typed.

    Loss and architecture options get their defaults written out, so the saved config records
    the options the run really used.
    """
    defaults = {name: d.for_model(config.model) for name, d in MODEL_DEFAULTS.items()
                if name != "n_samples" and getattr(config, name) is None}
    arch = plugins.load("architectures", config.architecture)
    arch_options = arch.read_options(config.architecture_options)
    for name in config.hook_points:  # a misspelt name fails before the model loads
        HookPoint.parse(name)
    transcoder_outputs(config)  # and so does a transcoder output before its input
    loss_options = dataclasses.asdict(loss.opts)
    return dataclasses.replace(config, **defaults, loss_options=loss_options,
                               architecture_options=dataclasses.asdict(arch_options))


def make_loss(config: TrainConfig) -> Loss:
    loss_cls = plugins.load("losses", config.loss)
    return loss_cls(config.sparsity_coeff, **config.loss_options)


def setup_device(config: TrainConfig) -> tuple[Dist, torch.device]:
    """Pick the device (joining the process group under torchrun) and set its backends."""
    dist, device = distributed.setup(resolve_device(config.device))
    precision.configure_backends(device)
    return dist, device


def resolve_hook_points(config: TrainConfig, loaded: LoadedModel) -> TrainConfig:
    """A copy naming its hook points (default: resid_pre of the middle layer), all checked."""
    points = [HookPoint.parse(name) for name in config.hook_points]
    if not points:  # a transcoder's default input is the middle layer's MLP input
        default = HookPoint.default(loaded.n_layers)
        points = [HookPoint(default.layer, "mlp_in") if config.transcoder_output else default]
    for hp in points:
        loaded.width_at(hp)  # the layer exists and the hook point can be located there
    return dataclasses.replace(config, hook_points=[hp.name for hp in points])


def transcoder_outputs(config: TrainConfig) -> dict[HookPoint, HookPoint]:
    """Each transcoder's output hook point by its input one; empty for plain SAEs."""
    if config.transcoder_output is None:
        return {}
    return {HookPoint.parse(name): HookPoint.parse(name).output_for(config.transcoder_output)
            for name in config.hook_points}


def check_transcoder_widths(outputs: Mapping[HookPoint, HookPoint], widths: Mapping[str, int],
                            loaded: LoadedModel) -> None:
    """A transcoder maps between equal widths: one line where its two ends differ."""
    for hp, out in outputs.items():
        width = loaded.width_at(out)
        if width != widths[hp.name]:
            raise SaeKitError(f"a transcoder from {hp} (width {widths[hp.name]}) to {out} "
                              f"(width {width}): sae-kit transcoders map between equal widths; "
                              "choose an output hook point of the input's width")


def resolve_sizes(config: TrainConfig, loaded: LoadedModel, dist: Dist) -> Sizes:
    context = _context(config, loaded)
    n_samples = config.n_samples or int(MODEL_DEFAULTS["n_samples"].for_model(config.model))
    total_steps = math.ceil(n_samples / (config.samples_per_step * dist.world_size))
    return Sizes(context=context, n_samples=n_samples, total_steps=total_steps,
                 warmup_steps=round(config.warmup_fraction * total_steps),
                 n_dict=max(1, round(config.dict_ratio * loaded.d_model)))


def _context(config: TrainConfig, loaded: LoadedModel) -> int:
    limit = loaded.max_positions
    if config.context is None:
        return min(1024, limit) if limit else 1024
    if limit and config.context > limit:
        raise SaeKitError(
            f"context {config.context} is longer than this model's {limit} positions; "
            f"use --context {limit} or less"
        )
    return config.context


def build_saes(config: TrainConfig, widths: int | Mapping[str, int], n_dict: int,
               device: torch.device, start: StartingPoint | None = None) -> dict[HookPoint, SAE]:
    """One SAE per hook point, initialised from the seed or the weights of ``start`` (compiled
    when asked).

    widths: each hook point's activation width by name (or one width for all)."""
    plugins.load("architectures", config.architecture)  # an unknown name fails before the check
    if isinstance(widths, int):
        widths = dict.fromkeys(config.hook_points, widths)
    check_memory(len(config.hook_points), max(widths.values()), n_dict, device)
    made = seeded_saes(config.architecture, config.architecture_options,
                       {name: widths[name] for name in config.hook_points}, n_dict,
                       config.seed, device)
    saes = {HookPoint.parse(name): sae for name, sae in made}
    if config.transcoder_skip:
        for sae in saes.values():
            sae.add_skip()
    if start is not None:
        for hp, sae in saes.items():
            sae.load_state_dict(start.saes[hp].state_dict())
    if config.compile:
        precision.compile_modules([(hp.name, sae) for hp, sae in saes.items()],
                                  warn_stderr)
    return saes


def check_memory(n_saes: int, d_model: int, n_dict: int, device: torch.device) -> None:
    """One clear line, before allocating, when the SAEs cannot fit in the device's memory.

    Training holds each SAE's weights, gradients and two Adam moments: 4 fp32 copies of about
    2 * d_model * n_dict numbers.
    """
    need = 4 * 4 * n_saes * (2 * d_model * n_dict + n_dict + d_model)
    have = _memory_bytes(device)
    if have and need > have:
        raise SaeKitError(
            f"{counted(n_saes, 'SAE')} of {n_dict:,} x {d_model} need about "
            f"{need / 2**30:,.1f} GiB for weights, gradients and Adam state, more than the "
            f"{have / 2**30:,.1f} GiB of "
            f"{device}; lower --dict-ratio"
        )


def _memory_bytes(device: torch.device) -> int | None:
    if device.type == "cuda":
        return int(torch.cuda.get_device_properties(device).total_memory)
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not POSIX: no check
        return None


def make_optimizer(
    config: TrainConfig, params: list[torch.nn.Parameter], sizes: Sizes
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """Adam over what trains (the SAEs, or a --lora run's adapters), with linear warm-up then
    cosine decay."""
    optimizer = precision.adam(params, lr=config.lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: warmup_cosine(s, sizes.total_steps, sizes.warmup_steps,
                                           config.min_lr_ratio)
    )
    return optimizer, scheduler


def make_data(config: TrainConfig, loaded: LoadedModel, context: int, skip_windows: int,
              dist: Dist) -> Iterator[torch.Tensor]:
    """This rank's micro-batches; the first is read now so dataset errors surface here."""
    data = training_batches(config.data_spec, loaded.tokenizer, context, config.seed,
                            config.batch_size, skip=skip_windows, rank=dist.rank,
                            world_size=dist.world_size)
    return itertools.chain([next(data)], data)


def run_dir_for(config: TrainConfig) -> Path:
    """``--out``, or a fresh ``runs/<model>-<loss>-<time>``."""
    if config.output_dir:
        return Path(config.output_dir)
    model = Path(config.model.rstrip("/")).name
    return Path("runs") / f"{model}-{config.loss}-{time.strftime('%Y%m%d-%H%M%S')}"
