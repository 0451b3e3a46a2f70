"""`sae-kit plugins`: what is installed, by group."""

from __future__ import annotations

import dataclasses
import json

import typer
from rich.table import Table

from sae_kit.cli.common import friendly_errors
from sae_kit.plugins import list_plugins


@friendly_errors
def plugins(
    as_json: bool = typer.Option(False, "--json", help="Print JSON for machines."),
) -> None:
    """List installed plugins (models, losses, architectures) with their distributions."""
    rows = list_plugins()
    if as_json:
        typer.echo(json.dumps([dataclasses.asdict(r) for r in rows], indent=2))
        return
    from rich.console import Console

    table = Table("group", "name", "distribution", "version", "object")
    for r in rows:
        table.add_row(r.group, r.name, r.distribution, r.version, r.value)
    Console().print(table)
