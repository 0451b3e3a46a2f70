"""The `sae-kit` command line: one Typer app, one module per command."""

from __future__ import annotations

import typer

from sae_kit.cli import (
    bench_cmd,
    cache_cmd,
    compare_cmd,
    eval_cmd,
    explain_cmd,
    features_cmd,
    hub_cmd,
    importance_cmd,
    plugins_cmd,
    probe_cmd,
    saelens_cmd,
    sweep_cmd,
    train_cmd,
)
from sae_kit.train import malloc
from sae_kit.version import __version__

app = typer.Typer(
    name="sae-kit",
    help="Train sparse autoencoders on language-model activations, end to end.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # locals may hold tokens
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    # Plain help: a flag reads as a flag (rich's panels show `--json <bool>`, as if it took a
    # value), and a help text is never parsed as markup (`name[/hook_point]` broke `eval -h`).
    rich_markup_mode=None,
)
app.command("train")(train_cmd.train_command)
app.command("eval")(eval_cmd.evaluate)
app.command("sweep")(sweep_cmd.sweep_command)
app.command("cache")(cache_cmd.cache)
app.command("features")(features_cmd.features)
app.command("compare")(compare_cmd.compare)
app.command("importance")(importance_cmd.importance)
app.command("bench")(bench_cmd.bench)
app.command("probe")(probe_cmd.probe)
app.command("explain")(explain_cmd.explain)
app.command("plugins")(plugins_cmd.plugins_command)
app.command("push")(hub_cmd.push)
app.command("pull")(hub_cmd.pull)
app.command("export")(saelens_cmd.export)
app.command("import")(saelens_cmd.import_)


def _version(value: bool) -> None:
    if value:
        typer.echo(__version__)
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Global options."""


def main() -> None:
    malloc.configure()  # before any command imports torch (docs/performance.md)
    app()
