"""The Python API: ``from sae_kit import TrainConfig, train_saes``.

    from sae_kit import TrainConfig, train_saes

    run_dir = train_saes(TrainConfig(loss="e2e", sparsity_coeff=2.0, n_samples=400))
    group = train_saes("run.toml", lambdas=[0.5, 1, 2, 4, 8], seed=1)  # one SAE per lambda

``train_saes`` takes a TrainConfig or a settings file (TOML, JSON — a run's config.json — or YAML),
field overrides as keywords, and optionally several lambdas trained in one shared pass; it
returns the run directory (the group directory for several lambdas, one run directory per
lambda inside it). The CLI's ``sae-kit train`` is a thin layer over :func:`prepare` and the
loop's ``fit``. A lone run that goes NaN raises SaeKitError; in a group such an SAE stops alone
and, once the others are saved, ``MembersStopped`` (a SaeKitError) lists each one that stopped.
Progress goes to ``on_step`` or, without one, to the ``sae_kit`` logger
(``logging.basicConfig(level=logging.INFO)`` shows it; see sae_kit.progress).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sae_kit.errors import SaeKitError
from sae_kit.record.config import TrainConfig
from sae_kit.train.settings_file import config_from_settings, normalise, read_settings


def load_config(path: str | Path, **overrides: Any) -> tuple[TrainConfig, list[float]]:
    """A settings file as a TrainConfig with ``overrides``; and its lambdas (a file may list
    several: ``lambda = [0.5, 1, 2]``). A run's config.json keeps everything but its output
    directory, so a rerun gets a fresh one unless ``output_dir`` is given."""
    settings = normalise(read_settings(path), where=str(path))
    record = "resolved" in read_settings(path)  # a run's config.json: lambda always recorded
    if record:
        settings.pop("output_dir", None)
    file_lambda = "sparsity_coeff" in settings and "sparsity_coeff" not in overrides
    settings.update(overrides)
    lambdas = settings.get("sparsity_coeff", TrainConfig.sparsity_coeff)
    lambdas = [float(x) for x in lambdas] if isinstance(lambdas, list) else [float(lambdas)]
    if not lambdas:
        raise SaeKitError(f"{path}: lambda needs at least one value")
    settings["sparsity_coeff"] = lambdas[0]
    config = config_from_settings(settings, where=str(path))
    if file_lambda and not record:
        refuse_meaningless_lambda(config.architecture, f"{path}: lambda")
    return config, lambdas


def refuse_meaningless_lambda(architecture: str, given: str) -> None:
    """A lambda someone gave weights a penalty that some architectures (TopK: k sets the L0)
    do not have: refused, not ignored. ``given`` names where it was given (``--lambda``)."""
    from sae_kit import plugins

    if not plugins.load("architectures", architecture).penalised:
        raise SaeKitError(f"{given} has no effect with the {architecture!r} architecture (it "
                          "has no sparsity penalty; its options set the sparsity, e.g. k=32); "
                          f"drop {given.rsplit(': ', 1)[-1]}")


def prepare(config: TrainConfig, lambdas: Sequence[float] | None = None
            ) -> tuple[list[Any], Path | None]:
    """Build the run (or, for several lambdas, the shared-pass group and its group.json);
    every input error surfaces here. Returns the runs and the group directory (None alone)."""
    from sae_kit.train.group import build_group, lambda_group, open_group_dir, write_manifest

    lambdas = list(lambdas or [config.sparsity_coeff])
    if len(lambdas) == 1:
        config = dataclasses.replace(config, sparsity_coeff=lambdas[0])
        return build_group([config]), None
    from sae_kit.train import distributed

    main = distributed.from_env().is_main
    fresh = config.output_dir is None or not Path(config.output_dir).exists()
    group_dir, configs = lambda_group(config, lambdas, claim=main)
    if main:
        open_group_dir(group_dir)
    try:
        runs = build_group(configs)
    except BaseException:
        if main and fresh:  # made above and still empty: a failed start leaves nothing
            _remove_if_empty(group_dir)
        raise
    if runs[0].dist.is_main:
        write_manifest(group_dir, runs)
    return runs, group_dir


def _remove_if_empty(path: Path) -> None:
    with contextlib.suppress(OSError):  # not empty, or gone: nothing of the user's is touched
        path.rmdir()


def train_saes(config: TrainConfig | str | Path, *, lambdas: Sequence[float] | None = None,
               on_step: Callable[[int, int, dict | None], None] | None = None,
               **overrides: Any) -> Path:
    """Train SAEs; returns the run directory (see the module doc).

    Sets glibc to reuse freed large buffers, as the ``sae-kit`` command does (``SAE_KIT_MALLOC=
    system`` keeps glibc's defaults): a training process is the process's main job, and this
    is most of the command's CPU speed (docs/performance.md#memory-reuse-on-cpu).
    """
    from sae_kit.train import malloc
    from sae_kit.train.loop import fit

    malloc.for_library()
    if isinstance(config, TrainConfig):
        config = dataclasses.replace(config, **overrides)
        found = [config.sparsity_coeff]
    else:
        config, found = load_config(config, **overrides)
    if config.finetune_fraction:  # MSE pre-training, then the fine-tune (sae_kit.train.recipe)
        from sae_kit.train import recipe

        (lam, *more) = list(lambdas or found)
        if more:
            raise SaeKitError("finetune_fraction trains one SAE per hook point; give one lambda")
        config = dataclasses.replace(config, sparsity_coeff=lam)
        return recipe.fit_phases(recipe.start(config), False,
                                 lambda runs, at, _name: fit(runs, on_step, start=at))
    runs, group_dir = prepare(config, lambdas or found)
    return fit(runs, on_step or log_steps(), group_dir=group_dir)


def log_steps() -> Callable[[int, int, dict | None], None]:
    """An ``on_step`` that logs ``training 120/400 (30%), 0:01:10 left  loss ...`` to the
    ``sae_kit`` logger every SAE_KIT_LOG_SECONDS (sae_kit.progress); the default of train()."""
    from sae_kit.progress import ProgressLines
    from sae_kit.train.stats import step_status

    lines, last = ProgressLines(), {}

    def on_step(step: int, total: int, row: dict | None) -> None:
        last.update({"status": step_status(row)} if row else {})
        lines("training", step, total, last.get("status", ""))

    return on_step
