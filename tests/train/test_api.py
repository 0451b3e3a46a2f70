"""Config files (`sae-kit train --config`) and the Python API (`from sae_kit import train_saes`)."""

import json
import subprocess
import sys
import types

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from sae_kit.cli import app

runner = CliRunner()
SAE = "blocks.1.hook_resid_pre"


pytestmark = pytest.mark.usefixtures("one_thread")


def _settings(model_dir):
    return (f'model = "{model_dir}"\ndataset = "pydoc"\nloss = "local"\nlayer = 1\n'
            'context = 16\nbatch_size = 2\ngrad_accum = 1\nn_samples = 4\ndict_ratio = 4\n'
            'device = "cpu"\nlambda = 0.5\n')


def _config(run_dir):
    return json.loads((run_dir / "config.json").read_text())


@pytest.mark.integration
def test_a_toml_config_file_with_flags_overriding_it(tiny_gpt2, tmp_path):
    path = tmp_path / "run.toml"
    path.write_text(_settings(tiny_gpt2))
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", "--config", str(path), "--seed", "3", "--out", str(out)])
    assert result.exit_code == 0, result.output
    saved = _config(out)
    assert saved["seed"] == 3 and saved["sparsity_coeff"] == 0.5 and saved["loss"] == "local"
    assert saved["hook_points"] == [SAE] and saved["batch_size"] == 2


@pytest.mark.integration
def test_a_runs_config_json_reruns_it_with_one_change(tiny_gpt2, tmp_path):
    path = tmp_path / "run.toml"
    path.write_text(_settings(tiny_gpt2))
    first, again, other = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    assert runner.invoke(app, ["train", "--config", str(path), "--out", str(first)]).exit_code == 0
    config_json = str(first / "config.json")
    assert runner.invoke(app, ["train", "--config", config_json, "--out", str(again)]
                         ).exit_code == 0
    result = runner.invoke(app, ["train", "--config", config_json, "--seed", "1",
                                 "--out", str(other)])
    assert result.exit_code == 0, result.output
    a, b, c = (load_file(str(d / SAE / "sae.safetensors")) for d in (first, again, other))
    assert all(torch.equal(a[k], b[k]) for k in a)  # the same run, reproduced
    assert not torch.equal(a["W_enc"], c["W_enc"])
    changed = {k for k, v in _config(other).items() if _config(first)[k] != v}
    assert changed == {"seed", "output_dir"}


@pytest.mark.integration
def test_python_api_trains_a_group_and_returns_its_directory(tiny_gpt2, tmp_path):
    from sae_kit import TrainConfig, train_saes

    path = tmp_path / "run.toml"
    path.write_text(_settings(tiny_gpt2))
    group = train_saes(path, lambdas=[0.1, 1.0], output_dir=str(tmp_path / "g"))
    assert group == tmp_path / "g"
    assert [_config(group / f"lambda{x}")["sparsity_coeff"] for x in ("0.1", "1")] == [0.1, 1.0]
    config = TrainConfig(model=str(tiny_gpt2), dataset="pydoc", loss="local", hook_points=[SAE],
                         context=16, batch_size=2, grad_accum=1, n_samples=4, dict_ratio=4,
                         device="cpu")
    run_dir = train_saes(config, output_dir=str(tmp_path / "one"))
    assert (run_dir / SAE / "sae.safetensors").is_file()


@pytest.mark.integration
def test_importing_the_api_names_does_not_import_torch():
    code = "import sys; from sae_kit import TrainConfig, train_saes; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "False"


@pytest.mark.integration
@pytest.mark.parametrize(("text", "message"), [
    ("colour = 1\n", "unknown setting(s) colour"),
    ("lambda = [\n", "is not valid TOML"),
])
def test_a_bad_config_file_is_one_line(tmp_path, text, message):
    path = tmp_path / "run.toml"
    path.write_text(text)
    result = runner.invoke(app, ["train", "--config", str(path)])
    assert result.exit_code == 2 and message in result.output


def test_one_name_one_meaning_the_package_is_no_function():
    import sae_kit
    import sae_kit.train
    from sae_kit.train.api import train_saes

    # The package is a package (it once doubled as the API function, by swapping its class),
    # and the API function has a name of its own.
    assert type(sae_kit.train) is types.ModuleType and not callable(sae_kit.train)
    assert sae_kit.train_saes is train_saes and sae_kit.train.train_saes is train_saes
