"""Every command's help renders: rich reads help texts as markup, so a stray ``[/x]`` in one
(``namespace/name[/hook_point]``) once made ``sae-kit eval --help`` a traceback."""

import pytest
from typer.testing import CliRunner

from sae_kit.cli import app

runner = CliRunner()
COMMANDS = sorted(c.name for c in app.registered_commands)


@pytest.mark.integration
@pytest.mark.parametrize("command", COMMANDS)
def test_every_commands_help_renders(command):
    result = runner.invoke(app, [command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert f"Usage: sae-kit {command}" in " ".join(result.output.split())


def test_the_commands_are_all_there():
    assert {"train", "eval", "sweep", "features", "compare", "push", "pull", "export",
            "import", "plugins", "explain"} <= set(COMMANDS)
