"""What the `sae-kit` entry point does before any command runs."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from sae_kit import cli


def test_importing_the_cli_does_not_import_torch():
    # torch reads THP_MEM_ALLOC_ENABLE once, at its first allocation: main() can only set it
    # if importing the commands has not imported torch already.
    code = "import sys, sae_kit.cli; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "False"


def test_main_turns_on_huge_pages_unless_the_user_chose(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["sae-kit", "--version"])
    monkeypatch.setenv("THP_MEM_ALLOC_ENABLE", "unset")  # records the original, restored after
    monkeypatch.delenv("THP_MEM_ALLOC_ENABLE")
    with pytest.raises(SystemExit):
        cli.main()
    assert os.environ["THP_MEM_ALLOC_ENABLE"] == "1"

    monkeypatch.setenv("THP_MEM_ALLOC_ENABLE", "0")
    with pytest.raises(SystemExit):
        cli.main()
    assert os.environ["THP_MEM_ALLOC_ENABLE"] == "0"
