"""The whole fine-tune recipe in one command: MSE pre-training, then the KL fine-tune.

    sae-kit train --loss kl+mse --finetune-fraction 0.1 --n-samples 800 --out runs/ft

After Karvonen 2025 (arXiv 2503.17272): of ``n_samples`` windows, the first ``1 - f`` train a
fresh SAE with the MSE objective (``local``) in ``OUT/pretrain``; the last ``f`` fine-tune it
with ``--loss`` (``kl+mse``), ``--init-from OUT/pretrain``, on the windows after those the
pre-training read (``skip_samples``), in ``OUT`` itself — so ``OUT`` is an ordinary run that
``sae-kit eval`` reads. Each phase has its own linear warm-up and cosine to ``min_lr_ratio``
of the peak over its own steps, at the same ``--lr``. ``OUT/recipe.json`` keeps the settings
as given; ``--resume OUT`` continues whichever phase was interrupted.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sae_kit.errors import SaeKitError
from sae_kit.record.config import MODEL_DEFAULTS, TrainConfig
from sae_kit.store.jsonio import read_json, write_json_atomic
from sae_kit.store.run_dir import RunDir
from sae_kit.store.sae_dir import saved_every_sae
from sae_kit.train import checkpoint
from sae_kit.train.build import run_dir_for
from sae_kit.train.signals import Interrupted

PRETRAIN_LOSS = "local"
FINETUNE_LOSSES = ("kl+mse",)  # objectives that start from an SAE and read its source's scale
RECIPE = "recipe.json"
PRETRAIN = "pretrain"


@dataclasses.dataclass(frozen=True)
class Phase:
    name: str
    config: TrainConfig


def phases(config: TrainConfig) -> list[Phase]:
    """The two runs of ``config``'s recipe (``finetune_fraction`` > 0), each an ordinary run."""
    _check(config)
    total = config.n_samples or int(MODEL_DEFAULTS["n_samples"].for_model(config.model))
    tuned = round(total * config.finetune_fraction)
    if tuned < 1 or tuned >= total:
        raise SaeKitError(
            f"--finetune-fraction {config.finetune_fraction:g} of {total} samples leaves "
            f"{total - tuned} for pre-training and {tuned} for the fine-tune; each needs at "
            "least one: raise --n-samples or choose another fraction")
    out = run_dir_for(config)
    common = dict(finetune_fraction=0.0, skip_samples=config.skip_samples)
    pre = dataclasses.replace(config, **common, loss=PRETRAIN_LOSS, loss_options={},
                              n_samples=total - tuned, output_dir=str(out / PRETRAIN))
    tune = dataclasses.replace(config, finetune_fraction=0.0, n_samples=tuned,
                               skip_samples=config.skip_samples + total - tuned,
                               init_from=str(out / PRETRAIN), output_dir=str(out))
    return [Phase("pre-training (local)", pre), Phase(f"fine-tune ({config.loss})", tune)]


def _check(config: TrainConfig) -> None:
    if config.loss not in FINETUNE_LOSSES:
        raise SaeKitError(f"--finetune-fraction pre-trains with MSE and fine-tunes with --loss, "
                          f"which must be {' or '.join(FINETUNE_LOSSES)} (got {config.loss!r}); "
                          "add --loss kl+mse")
    if config.init_from:
        raise SaeKitError("--finetune-fraction pre-trains its own SAE; drop --init-from (or "
                          "drop --finetune-fraction to fine-tune the source alone)")


def start(config: TrainConfig) -> list[Phase]:
    """The phases of a new recipe run; its settings written to OUT/recipe.json."""
    found = phases(config)
    out = Path(found[-1].config.output_dir or ".")
    if (out / RECIPE).exists() or checkpoint.list_checkpoints(RunDir(out / PRETRAIN).checkpoints):
        raise SaeKitError(f"{str(out)!r} already holds a recipe run; continue it with "
                          f"`sae-kit train --resume {out}` or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out / RECIPE, dataclasses.replace(config, output_dir=str(out)).to_dict())
    return found


def remaining(run_dir: str | Path, **overrides: Any) -> tuple[list[Phase], bool]:
    """A recipe run's phases still to train, and whether the first of them resumes from a
    checkpoint (else it starts fresh). ``overrides``: those a resumed run may change."""
    out = Path(run_dir)
    given = {name: value for name, value in overrides.items() if value is not None}
    config = TrainConfig.from_dict({**read_json(out / RECIPE), **given, "output_dir": str(out)})
    pre, tune = phases(config)
    if checkpoint.list_checkpoints(RunDir(out).checkpoints):
        return [tune], True
    pre_dir = out / PRETRAIN
    if _finished(pre_dir):
        return [tune], False
    return [pre, tune], bool(checkpoint.list_checkpoints(RunDir(pre_dir).checkpoints))


def _finished(run_dir: Path) -> bool:
    """The pre-training saved its SAEs (a run writes them when it ends) and did not fail."""
    layout = RunDir(run_dir)
    return saved_every_sae(layout) and not layout.failed.exists()


def fit_phases(todo: list[Phase], resuming: bool, fit_phase: FitPhase) -> Path:
    """Train ``todo`` in order (the first from its checkpoint when ``resuming``); a signal in
    any phase says to resume the recipe's directory, which continues where it stopped."""
    from sae_kit.train.group import build_group
    from sae_kit.train.resume import resume

    out = Path(todo[-1].config.output_dir or ".")
    for i, phase in enumerate(todo):
        if i == 0 and resuming:
            run, at = resume(phase.config.output_dir or "", **resume_overrides(phase.config))
            runs = [run]
        else:
            runs, at = build_group([phase.config]), None
        try:
            fit_phase(runs, at, phase.name)
        except Interrupted as stop:
            raise Interrupted(stop.signum, out, stop.step, stop.checkpoint,
                              stop.world_size) from None
    return out


def resume_overrides(config: TrainConfig) -> dict[str, Any]:
    """What a phase resumed inside a recipe takes from the recipe's (maybe overridden) settings."""
    from sae_kit.train.resume import RESUME_OVERRIDES

    return {name: getattr(config, name) for name in RESUME_OVERRIDES}


FitPhase = Callable[[list[Any], Any, str], Any]
"""``fit_phase(runs, start, name)`` trains one phase (the CLI's shows its progress bar)."""
