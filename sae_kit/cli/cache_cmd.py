"""`sae-kit cache DIR`: write the original model's pass once, for e2e runs to read.

Takes `sae-kit train`'s options, those that set the clean pass: the same command line with
`train` replaced by `cache DIR` writes the cache that run (and its other lambdas, seeds,
architectures, fine-tunes) reads with `--clean-cache DIR`.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

import typer

from sae_kit.cli.common import err, friendly_errors
from sae_kit.cli.logs import progress, setup_logging
from sae_kit.cli.train_options import config_from_options, config_parameters
from sae_kit.errors import SaeKitError

NOT_HERE = {"resume", "config", "out", "as_json", "tracker", "clean_cache", "save_every",
            "keep_checkpoints", "log_every", "compile", "sparsity_coeff"}
"""Train options that do not change the clean pass; the cache command does not take them."""


@friendly_errors
def cache(directory: str, windows: int | None, **options: Any) -> None:
    """Write what the original model computes on the training windows (the residual at the
    hook points and the final hidden states) to DIRECTORY, for `train --clean-cache`."""
    setup_logging()
    out = Path(directory)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise SaeKitError(f"{directory!r} exists and is not empty; give a new directory (a "
                          "cache is written once)")
    if windows is not None and windows < 1:
        raise SaeKitError(f"--windows must be 1 or more, got {windows}")
    defaults = {p.name: p.default.default for p in config_parameters() if p.name in NOT_HERE}
    config = config_from_options({**defaults, **options})
    from sae_kit.train.build import build_run  # torch only once the arguments are valid
    from sae_kit.train.clean_cache import (
        cache_key,
        clean_needs,
        dataset_windows,
        windows_for,
        write_cache,
    )

    run = build_run(config)
    n = windows or windows_for(run.resolved.n_samples)
    positions, final_hidden = clean_needs(run.loss, run.splice)
    key = cache_key(run.config, run.loaded, run.resolved.context)
    with progress("caching") as bar:
        task = bar.add_task("caching", total=n, status="")
        index = write_cache(out, key, run.splice, dataset_windows(run.config, run.loaded,
                            run.resolved.context), n, positions, final_hidden,
                            run.config.batch_size, run.device,
                            on_batch=lambda done: bar.update(task, completed=done))
    size = sum(s["bytes"] for s in index["shards"])
    err.print(f"[green]done[/]: {index['windows']:,} windows of {key.context} tokens, "
              f"{size / 2**20:,.1f} MiB ({index['bytes_per_token']:,.0f} bytes per token: "
              f"positions {positions}{' and the final hidden states' if final_hidden else ''})",
              highlight=False, soft_wrap=True)
    if index["windows"] < n:
        err.print(f"[yellow]note:[/] the dataset has {index['windows']:,} windows, all cached "
                  "(every epoch reads them)", highlight=False, soft_wrap=True)
    typer.echo(str(out))


cache.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
    [inspect.Parameter("directory", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=str,
                       default=typer.Argument(..., help="New directory for the cache.")),
     inspect.Parameter("windows", inspect.Parameter.KEYWORD_ONLY, annotation=int,
                       default=typer.Option(None, "--windows", help="Windows to cache, in "
                                            "dataset order; default: the run's samples plus "
                                            "the shuffle buffer (1024), which holds any seed's "
                                            "first epoch.")),
     *[p for p in config_parameters() if p.name not in NOT_HERE]]
)
