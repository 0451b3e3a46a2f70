"""`sae-kit export` and `sae-kit import`: other libraries' on-disk SAE layouts (docs/hub.md)."""

from __future__ import annotations

import typer

from sae_kit.cli.common import err, friendly_errors
from sae_kit.errors import SaeKitError, counted

FORMATS = ("saelens",)
EXPORT_FORMATS = ("saelens", "circuit-tracer")


def _check_format(fmt: str, formats: tuple[str, ...] = FORMATS) -> None:
    if fmt not in formats:
        raise SaeKitError(f"unknown format {fmt!r}; supported: {', '.join(formats)}")


@friendly_errors
def export(
    sources: list[str] = typer.Argument(
        ..., help="An SAE directory (RUN_DIR/HOOK_POINT), a run directory (every SAE), or a Hub "
        "id; for circuit-tracer, several of them (one transcoder per layer in all).",
        show_default=False,
    ),
    out: str = typer.Argument(..., help="New directory to write (one folder per SAE for a run "
                              "in the saelens layout)."),
    fmt: str = typer.Option("saelens", "--format",
                            help="Layout to write: saelens, circuit-tracer."),
) -> None:
    """Write SAEs in another library's layout (SAELens: cfg.json + sae_weights.safetensors;
    circuit-tracer: one transcoder set, config.yaml + layer_L.safetensors)."""
    from pathlib import Path

    from sae_kit.store.sources import resolve_sae_source

    _check_format(fmt, EXPORT_FORMATS)
    if fmt == "saelens" and len(sources) > 1:
        raise SaeKitError(f"the saelens layout takes one SAE or run directory, got "
                          f"{len(sources)}; export each on its own")
    paths = [resolve_sae_source(s) for s in sources]
    if fmt == "circuit-tracer":
        from sae_kit.store.circuit_tracer import export_circuit_tracer

        n = len(list(export_circuit_tracer(paths, Path(out)).glob("layer_*.safetensors")))
        err.print(f"[green]exported[/] {counted(n, 'transcoder')} as one circuit-tracer set")
    else:
        n = _export_saelens(paths[0], out)
        err.print(f"[green]exported[/] {counted(n, 'SAE')} in the {fmt} layout")
    typer.echo(out)


def _export_saelens(path, out: str) -> int:
    from pathlib import Path

    from sae_kit.store.sae_dir import is_sae_dir, sae_dirs
    from sae_kit.store.saelens import export_saelens, fresh_dir

    if is_sae_dir(path):
        export_saelens(path, out)
        return 1
    dirs = sae_dirs(path)
    fresh_dir(out)  # the docs promise a new or empty directory: nothing is overwritten
    for hp, d in dirs.items():
        export_saelens(d, Path(out) / hp.name)
    return len(dirs)


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
