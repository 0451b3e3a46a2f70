"""Settings files are checked against TrainConfig's types before any model loads: one line
naming the file and the key (issue 21). The model named is a directory that does not exist,
so a check that ran only after loading would say so instead."""

import json

import pytest
from typer.testing import CliRunner

from sae_kit.cli import app
from sae_kit.errors import SaeKitError
from sae_kit.train.api import load_config

runner = CliRunner()

WRONG_TYPES = {
    "batch_size float": ("batch_size = 2.5", "batch_size = 2.5 must be a whole number"),
    "context float": ("context = 32.5", "context = 32.5 must be a whole number or unset"),
    "lambda string": ('lambda = "abc"', "lambda = 'abc' must be a number or a list of numbers"),
    "lambda list with a string": ('lambda = [1, "x"]', "must be a number or a list of numbers"),
    "layer string": ('layer = "x"', "layer = 'x' must be a whole number or a list of whole"),
    "dataset list": ('dataset = ["pydoc"]', "dataset = ['pydoc'] must be a string"),
    "compile string": ('compile = "false"', "compile = 'false' must be true or false"),
    "seed float": ("seed = 1.5", "seed = 1.5 must be a whole number"),
    "n_samples string": ('n_samples = "10"', "n_samples = '10' must be a whole number"),
    "lr string": ('lr = "1e-3"', "lr = '1e-3' must be a number"),
    "dict_ratio bool": ("dict_ratio = true", "dict_ratio = True must be a number"),
    "hook_points string": ('hook_points = "blocks.1.hook_resid_pre"',
                           "must be a list of strings"),
    "loss_options number": ("loss_options = 5", "loss_options = 5 must be a table"),
    "trackers string": ('trackers = "wandb"', "trackers = 'wandb' must be a list of strings"),
    "hook unknown": ('hook = "resid_mid"\nlayer = 1', "hook = 'resid_mid' must be resid_pre"),
    "layer and hook_points": ('layer = 1\nhook_points = ["blocks.1.hook_resid_pre"]',
                              "both layer and hook_points are given"),
    "lambda and sparsity_coeff": ("lambda = 1\nsparsity_coeff = 2",
                                  "both lambda and sparsity_coeff are given"),
    "range": ("batch_size = 0", "invalid training settings: batch_size=0"),
}


@pytest.mark.integration
@pytest.mark.parametrize(("line", "message"), WRONG_TYPES.values(), ids=WRONG_TYPES.keys())
def test_a_toml_value_of_the_wrong_type_is_one_line_before_the_model_loads(
        tmp_path, monkeypatch, line, message):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "run.toml"
    dataset = "" if line.startswith("dataset") else 'dataset = "pydoc"\n'
    path.write_text(f'model = "{tmp_path / "no-model"}"\n{dataset}{line}\n')
    result = runner.invoke(app, ["train", "--config", str(path)])
    assert result.exit_code == 2, result.output
    assert "error:" in result.output and str(path) in result.output, result.output
    assert message in " ".join(result.output.split()), result.output
    assert "Traceback" not in result.output and "no-model" not in result.output.split(":")[-1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.toml"]  # nothing written


@pytest.mark.parametrize(("suffix", "text", "message"), [
    (".json", json.dumps({"batch_size": 2.5}), "batch_size = 2.5 must be a whole number"),
    (".json", json.dumps({"compile": "false"}), "compile = 'false' must be true or false"),
    (".json", json.dumps({"context": None, "seed": None}), "seed = None must be a whole number"),
    (".yaml", "compile: 'false'\n", "compile = 'false' must be true or false"),
    (".yaml", "seed: 1.5\n", "seed = 1.5 must be a whole number"),
    (".yaml", "a: 1\n  b: 2\n", "is not valid YAML: mapping values are not allowed here at line 2"),
    (".yaml", "batch_size: [1\n", "is not valid YAML"),
])
def test_json_and_yaml_files_are_checked_the_same_way(tmp_path, suffix, text, message):
    path = tmp_path / f"run{suffix}"
    path.write_text(text)
    with pytest.raises(SaeKitError, match="^'?" + str(tmp_path)) as caught:
        load_config(path)
    assert message in str(caught.value)


@pytest.mark.integration
def test_the_python_api_reads_a_file_through_the_same_check(tmp_path):
    from sae_kit import train_saes

    path = tmp_path / "run.toml"
    path.write_text('compile = "false"\n')
    with pytest.raises(SaeKitError, match="compile = 'false' must be true or false"):
        train_saes(path)


def test_right_values_still_load_and_ints_are_numbers(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text("lambda = [1, 2.5]\ndict_ratio = 4\nlr = 1e-3\ncompile = true\nlayer = 1\n"
                    'hook = "resid_post"\nloss_options = {ds_coeff = 2}\ncontext = 16\n')
    config, lambdas = load_config(path)
    assert lambdas == [1.0, 2.5] and config.dict_ratio == 4 and config.compile is True
    assert config.hook_points == ["blocks.1.hook_resid_post"] and config.context == 16


SWEEP_VALUES = {
    "base batch_size": ("[base]\nbatch_size = 2.5\n[[runs]]\nname = 'a'\n",
                        "batch_size = 2.5 must be a whole number"),
    "grid context": ("[grid]\ncontext = [16, 32.5]\n", "context = 32.5 must be a whole number"),
    "runs compile": ("[[runs]]\nname = 'a'\ncompile = 'false'\n",
                     "compile = 'false' must be true or false"),
    "runs layer": ("[[runs]]\nname = 'a'\nlayer = 'x'\n", "layer = 'x' must be a whole number"),
    "base lambda list": ("[base]\nlambda = [1, 2]\n[[runs]]\nname = 'a'\n",
                         "sparsity_coeff = [1, 2] must be a number"),
}


@pytest.mark.integration
@pytest.mark.parametrize(("body", "message"), SWEEP_VALUES.values(), ids=SWEEP_VALUES.keys())
def test_a_sweep_point_of_the_wrong_type_is_one_line_naming_file_and_point(tmp_path, body,
                                                                           message):
    path = tmp_path / "sweep.toml"
    path.write_text(f'out = "{tmp_path / "runs"}"\n{body}')
    result = runner.invoke(app, ["sweep", str(path)])
    assert result.exit_code == 2, result.output
    assert message in result.output and "point '" in result.output, result.output
    assert result.output.count(str(path)) == 1 and "Traceback" not in result.output
    assert not (tmp_path / "runs").exists()
