"""`sae-kit export` and `sae-kit import`: other libraries' on-disk SAE layouts (docs/hub.md)."""

from __future__ import annotations

import typer

from sae_kit.cli.common import err, friendly_errors
from sae_kit.errors import SaeKitError, counted

FORMATS = ("saelens",)


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise SaeKitError(f"unknown format {fmt!r}; supported: {', '.join(FORMATS)}")


@friendly_errors
def export(
    source: str = typer.Argument(
        ..., help="An SAE directory (RUN_DIR/HOOK_POINT), a run directory (every SAE), or a Hub "
        "id."
    ),
    out: str = typer.Argument(..., help="New directory to write (one folder per SAE for a run)."),
    fmt: str = typer.Option("saelens", "--format", help="Layout to write: saelens."),
) -> None:
    """Write SAEs in another library's layout (SAELens: cfg.json + sae_weights.safetensors)."""
    from pathlib import Path

    from sae_kit.store.sae_dir import sae_dirs
    from sae_kit.store.saelens import export_saelens, fresh_dir
    from sae_kit.store.sources import is_sae_dir, resolve_sae_source

    _check_format(fmt)
    path = resolve_sae_source(source)
    if is_sae_dir(path):
        written = [export_saelens(path, out)]
    else:
        dirs = sae_dirs(path)
        fresh_dir(out)  # the docs promise a new or empty directory: nothing is overwritten
        written = [export_saelens(d, Path(out) / hp.name) for hp, d in dirs.items()]
    err.print(f"[green]exported[/] {counted(len(written), 'SAE')} in the {fmt} layout")
    typer.echo(out)


@friendly_errors
def import_(
    source: str = typer.Argument(..., help="An SAELens SAE directory (cfg.json + weights)."),
    out: str = typer.Argument(..., help="New sae-kit SAE directory to write."),
    fmt: str = typer.Option("saelens", "--format", help="Layout to read: saelens."),
) -> None:
    """Convert an SAE from another library's layout into an sae-kit SAE directory."""
    from sae_kit.store.saelens import import_saelens
    from sae_kit.store.sources import resolve_sae_source

    _check_format(fmt)
    path = import_saelens(resolve_sae_source(source), out)
    err.print(f"[green]imported[/] {path.name}")
    typer.echo(str(path))
