"""A third-party plugin, installed as a real distribution, trains through the CLI.

The plugin is exactly what docs/writing-plugins.md describes: a pyproject.toml with entry
points and one module. The module's code is the complete examples from the interface
docstrings (sae_kit/model/adapter.py, losses/base.py, architectures/base.py), so this also proves
those examples work. pip installs it into a temporary directory; the CLI runs in a subprocess
that finds it only through PYTHONPATH, as any installed distribution is found.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import sae_kit.architectures.base
import sae_kit.losses.base
import sae_kit.model.adapter
from sae_kit import plugins
from sae_kit.store.sae_dir import load_sae_dir
from tests.helpers import FAST

PYPROJECT = """\
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "sae-kit-example"
version = "0.3.1"
dependencies = ["sae-kit"]

[project.entry-points."sae_kit.models"]
opt = "sae_kit_example:OPTAdapter"

[project.entry-points."sae_kit.losses"]
cosine = "sae_kit_example:CosineLoss"

[project.entry-points."sae_kit.architectures"]
tanh = "sae_kit_example:TanhSAE"

[tool.setuptools]
py-modules = ["sae_kit_example"]
"""
HOOK = "blocks.1.hook_resid_pre"


def docstring_example(module) -> str:
    """The indented code block after the first ``::`` of a module docstring."""
    block = module.__doc__.split("::\n", 1)[1]
    lines = []
    for line in block.splitlines():
        if line.strip() and not line.startswith(" "):
            break
        lines.append(line)
    return textwrap.dedent("\n".join(lines)).strip() + "\n"


def install_example_plugin(tmp_path: Path) -> Path:
    """Build and pip-install the example distribution into a fresh directory; returns it."""
    source = tmp_path / "sae-kit-example"
    source.mkdir()
    (source / "pyproject.toml").write_text(PYPROJECT)
    modules = [sae_kit.model.adapter, sae_kit.losses.base, sae_kit.architectures.base]
    (source / "sae_kit_example.py").write_text("\n\n".join(map(docstring_example, modules)))
    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
         "--no-build-isolation", "--target", str(site), str(source)],
        check=True, capture_output=True, cwd=tmp_path,
    )
    return site


@pytest.mark.slow  # pip-installs a distribution, then trains in a subprocess
def test_installed_plugin_trains_through_the_cli(tmp_path, tiny_model_dir, monkeypatch):
    site = install_example_plugin(tmp_path)
    assert list(site.glob("sae_kit_example-0.3.1.dist-info/entry_points.txt"))
    env = {**os.environ, "SAE_KIT_PLUGINS": "sae-kit,sae-kit-example",
           "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "sae_kit", "train", "--model", str(tiny_model_dir("opt")),
           "--out", str(out), *FAST, "--layer", "1", "--loss", "cosine", "-O", "scale=2",
           "--architecture", "tanh", "--arch-option", "scale=0.5"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(out)

    config = json.loads((out / "config.json").read_text())
    assert config["resolved"]["adapter"] == "sae_kit_example:OPTAdapter"  # not the fallback
    assert config["loss_options"] == {"scale": 2.0}  # typed, as architecture options are
    assert config["architecture_options"] == {"scale": 0.5}
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows and all(0 < r[f"cosine/{HOOK}"] < 2 for r in rows)

    # In this process too, the distribution is found once it is on the path.
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setenv("SAE_KIT_PLUGINS", "sae-kit,sae-kit-example")
    listed = {(p.group, p.name): (p.distribution, p.version) for p in plugins.list_plugins()}
    for key in [("sae_kit.models", "opt"), ("sae_kit.losses", "cosine"),
                ("sae_kit.architectures", "tanh")]:
        assert listed[key] == ("sae-kit-example", "0.3.1")
    sae, sae_config = load_sae_dir(out / HOOK)
    assert type(sae).__name__ == "TanhSAE" and sae.opts.scale == 0.5
    assert sae_config["architecture"] == "tanh" and sae_config["loss"] == "cosine"


def test_the_guide_shows_the_code_that_is_tested():
    """Every Python block in docs/writing-plugins.md is tested code: the GPT-2 plugin, the
    built-in relu architecture or an interface docstring's example."""
    root = Path(__file__).resolve().parents[2]
    guide = (root / "docs" / "writing-plugins.md").read_text()
    modules = [sae_kit.model.adapter, sae_kit.losses.base, sae_kit.architectures.base]
    sources = [docstring_example(m) for m in modules]
    sources.append((root / "plugins" / "sae-kit-gpt2" / "sae_kit_gpt2.py").read_text())
    sources.append((root / "sae_kit" / "architectures" / "relu.py").read_text())
    blocks = guide.split("```python\n")[1:]
    assert len(blocks) == 4
    for block in blocks:
        code = block.split("```", 1)[0]
        assert any(code in source for source in sources), code
    gpt2_pyproject = (root / "plugins" / "sae-kit-gpt2" / "pyproject.toml").read_text()
    assert f"```toml\n{gpt2_pyproject}```" in guide
