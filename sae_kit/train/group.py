"""Several runs trained in one pass: one SAE per lambda (or architecture) at the same hook points.

    sae-kit train --lambda 0.5,1,2,4,8 --out runs/sweep     # runs/sweep/lambda0.5/, ...

Every member is a whole :class:`~sae_kit.train.run.Run` with its own directory, config.json,
metrics.jsonl, checkpoints, optimizer and schedule, so it can be evaluated, pushed or resumed as
if it had been trained alone. What the members share is what does not depend on them: the model,
the data stream (so they must agree on everything that sets it, see ``SHARED_IN_ONE_PASS``) and
the clean forward pass of each batch (:class:`~sae_kit.model.splice.SharedClean`). Each member then
runs its own loss and backward in turn (no SAE appears in another member's loss), and clipping,
Adam and the schedule run per member, as alone.

The group directory holds ``group.json`` naming its members; ``sae-kit train --resume GROUP``
continues all of them from the newest step every member has a checkpoint of, except members
that stopped on a non-finite step (``failed.json``, see ``sae_kit.train.nonfinite``): as if
trained alone, such a member stops alone and the others go on.
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sae_kit.errors import SaeKitError
from sae_kit.model.splice import SharedClean
from sae_kit.record.config import SHARED_IN_ONE_PASS, TrainConfig
from sae_kit.store.jsonio import read_json, write_json_atomic
from sae_kit.store.run_dir import RunDir
from sae_kit.store.run_lock import claim_new_dir, unwritable_run_dir
from sae_kit.train import checkpoint
from sae_kit.train.build import build_run, run_dir_for

GROUP_FILE = "group.json"
GROUP_FORMAT = "sae-kit-group/1"


def check_shareable(configs: Sequence[TrainConfig]) -> None:
    """Refuse, in one line, configs that cannot be trained in one pass."""
    if not configs:
        raise SaeKitError("a group needs at least one run")
    for name in SHARED_IN_ONE_PASS:
        values = {repr(getattr(c, name)) for c in configs}
        if len(values) > 1:
            raise SaeKitError(
                f"runs trained in one pass must share {name} (got {', '.join(sorted(values))}); "
                "train them separately"
            )
    dirs = [c.output_dir for c in configs]
    if len(configs) > 1 and (None in dirs or len(set(dirs)) != len(dirs)):
        raise SaeKitError("each run in a group needs its own output_dir")


def build_group(configs: Sequence[TrainConfig], skip_windows: int = 0) -> list[Any]:
    """One Run per config, all reading one model, one data stream and one clean pass per batch."""
    check_shareable(configs)
    lead = build_run(configs[0], skip_windows)
    runs = [lead] + [build_run(c, skip_windows, share=lead) for c in configs[1:]]
    if len(runs) > 1:
        shared = lead.splice.shared or SharedClean(lead.splice.runner)  # a clean cache, or none
        for run in runs:
            run.splice.share_clean(shared)
    return runs


def open_group_dir(group_dir: Path) -> None:
    """Create the group directory and try a write in it, so that an unwritable ``--out`` is
    one line before the model loads rather than a traceback after it (rank 0)."""
    try:
        group_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=group_dir):
            pass
    except OSError as exc:  # read-only, under a file, /proc, ...
        raise unwritable_run_dir(group_dir, exc) from None


def write_manifest(group_dir: Path, runs: Sequence[Any]) -> None:
    """group.json: the members' directories, relative to the group directory when inside it."""
    members = []
    for run in runs:
        path = Path(run.run_dir)
        try:
            members.append(str(path.relative_to(group_dir)))
        except ValueError:
            members.append(str(path))
    try:
        group_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomic(group_dir / GROUP_FILE, {"format": GROUP_FORMAT, "members": members})
    except OSError as exc:  # a disk that filled since open_group_dir
        raise unwritable_run_dir(group_dir, exc) from None


def is_group(path: str | Path) -> bool:
    return (Path(path) / GROUP_FILE).is_file()


def member_dirs(group_dir: str | Path) -> list[Path]:
    """The members named by a group directory's group.json; one line if it is damaged."""
    group_dir = Path(group_dir)
    path = group_dir / GROUP_FILE
    try:
        data = read_json(path)
    except SaeKitError:  # not JSON, not UTF-8: the same advice as for wrong fields
        data = None
    members = data.get("members") if isinstance(data, dict) else None
    if (not isinstance(data, dict) or data.get("format") != GROUP_FORMAT
            or not isinstance(members, list) or not members
            or not all(isinstance(m, str) and m.strip() for m in members)):
        runs = sorted(d.name for d in group_dir.iterdir() if RunDir(d).is_run())
        each = "; ".join(f"sae-kit train --resume {group_dir / name}" for name in runs)
        raise SaeKitError(
            f"{str(path)!r} is not a readable sae-kit group file (damaged or edited); resume "
            f"each run alone ({each or 'none found'}), or restore it as "
            f'{{"format": "{GROUP_FORMAT}", "members": ["NAME", ...]}}'
        )
    return [group_dir / m for m in members]


class NoCommonStep(SaeKitError):
    """The members hold no checkpoint of one step (a group killed between its members' saves
    by a sae-kit that pruned each member as it saved): they can go on only one by one."""

    def __init__(self, dirs: Sequence[Path]) -> None:
        self.dirs = list(dirs)
        super().__init__(
            f"the runs in {str(self.dirs[0].parent)!r} have no checkpoint of a common step (a "
            "kill between their saves with --keep-checkpoints 1, before sae-kit pruned only "
            "after all had saved); resume each alone, which ends at the same weights: "
            + "; ".join(f"sae-kit train --resume {d}" for d in self.dirs)
        )


def common_checkpoints(dirs: Sequence[Path]) -> list[checkpoint.Checkpoint]:
    """Each member's checkpoint at the newest step all of them saved (a kill while the members
    were being saved leaves some one step behind)."""
    found = [{p.name for p in checkpoint.list_checkpoints(RunDir(d).checkpoints)} for d in dirs]
    steps = set.intersection(*found)
    if not steps:
        raise NoCommonStep(dirs)
    newest = max(steps)
    return [checkpoint.load(RunDir(d).checkpoints / newest) for d in dirs]


def lambda_group(config: TrainConfig, lambdas: Sequence[float], claim: bool = False
                 ) -> tuple[Path, list[TrainConfig]]:
    """``config`` once per lambda, each in ``<output_dir>/lambda<λ>/``; the group directory.

    Without ``--out``, ``claim`` (rank 0) creates the default directory exclusively, as a lone
    run's: two groups started in the same second get ``NAME`` and ``NAME-2``."""
    group_dir = run_dir_for(config)
    if claim and config.output_dir is None:
        group_dir = claim_new_dir(group_dir)
    configs = [dataclasses.replace(config, sparsity_coeff=lam,
                                   output_dir=str(group_dir / f"lambda{lam:g}"))
               for lam in dict.fromkeys(lambdas)]
    return group_dir, configs


