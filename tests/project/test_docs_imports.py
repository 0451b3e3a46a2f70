"""Every `from sae_kit... import ...` / `import sae_kit...` in README.md and docs/ works.

The import lines are collected from the Markdown (code blocks and prose alike) and run in a
fresh interpreter with `python -c`, so a moved or renamed public name breaks this test, not a
reader's first try.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
# `from sae_kit.x import a, b` (possibly in parentheses over several lines) or `import sae_kit.x`
IMPORT = re.compile(
    r"^[ \t>]*(from sae_kit(?:\.\w+)* import (?:\([^)]*\)|[\w, ]+(?: as \w+)?)"
    r"|import sae_kit(?:\.\w+)*(?: as \w+)?)[ \t]*(?:#.*)?$",
    re.MULTILINE,
)


def doc_imports() -> list[str]:
    found = []
    for path in DOCS:
        found += [" ".join(m.group(1).split()) for m in IMPORT.finditer(path.read_text())]
    return sorted(set(found))


def test_the_docs_show_imports():
    lines = doc_imports()
    assert "from sae_kit.losses import Loss, LossResult" in lines  # the plugin guide's
    assert any(line.startswith("from sae_kit.store") for line in lines)  # the README's


@pytest.mark.integration
def test_every_import_in_the_docs_runs():
    code = "\n".join(doc_imports())
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT)
    assert done.returncode == 0, f"{done.stderr}\n--- the imports:\n{code}"


GROUPS = {"sae_kit.models", "sae_kit.losses", "sae_kit.architectures",  # entry-point groups
          "sae_kit.model_sources"}
DOTTED = re.compile(r"`(sae_kit(?:\.\w+)+)")


@pytest.mark.integration
def test_every_dotted_name_in_the_docs_exists():
    names = sorted({m.group(1) for path in DOCS for m in DOTTED.finditer(path.read_text())})
    names = [name for name in names if name not in GROUPS]
    assert "sae_kit.load_sae" in names
    code = (
        "import importlib, sys\n"
        "for name in sys.argv[1:]:\n"
        "    module, _, attr = name.rpartition('.')\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except ModuleNotFoundError:\n"
        "        getattr(importlib.import_module(module), attr)\n"
    )
    done = subprocess.run([sys.executable, "-c", code, *names], capture_output=True, text=True,
                          cwd=ROOT)
    assert done.returncode == 0, done.stderr
