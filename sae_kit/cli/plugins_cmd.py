"""`sae-kit plugins`: what is installed, by group."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import typer
from rich.table import Table

from sae_kit.cli.common import friendly_errors
from sae_kit.plugins import GROUPS, PluginInfo, list_plugins, load


@friendly_errors
def plugins_command(
    as_json: bool = typer.Option(False, "--json", help="Print JSON for machines."),
    options: bool = typer.Option(
        False, "--options", help="Also list each loss's and architecture's options (imports them)."
    ),
) -> None:
    """List installed plugins (models, losses, architectures) with their distributions."""
    rows = [{**dataclasses.asdict(r), **_options(r)} if options else dataclasses.asdict(r)
            for r in list_plugins()]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    from sae_kit.cli.common import out_console

    table = Table("group", "name", "distribution", "version", "object")
    if options:
        table.add_column("options")
    for r in rows:
        cells = [r["group"], r["name"], r["distribution"], r["version"], r["value"]]
        if options:
            cells.append("\n".join(f"{o['name']}={o['default']!r}: {o['help']}"
                                   for o in r["options"]))
        table.add_row(*cells)
    out_console().print(table)


def _options(info: PluginInfo) -> dict[str, Any]:
    """The plugin's ``Options`` dataclass described; model adapters take none."""
    from sae_kit.options import describe_options

    kind = next(k for k, group in GROUPS.items() if group == info.group)
    cls = getattr(load(kind, info.name), "Options", None)
    return {"options": describe_options(cls) if dataclasses.is_dataclass(cls) else []}
