"""What a CLI user expects: -h, flags that read as flags, "did you mean", the rule that broke."""

import pytest
from typer.testing import CliRunner

from sae_kit.cli import app
from sae_kit.errors import SaeKitError, counted
from sae_kit.plugins import did_you_mean
from tests.helpers import write_run_record

runner = CliRunner()
COMMANDS = sorted(c.name for c in app.registered_commands)


@pytest.mark.parametrize("command", [[], *([c] for c in COMMANDS)])
@pytest.mark.integration  # runs the sae-kit CLI
def test_dash_h_is_help_and_flags_take_no_value(command):
    result = runner.invoke(app, [*command, "-h"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output and "-h, --help" in result.output
    assert "<bool>" not in result.output  # --json, --compile, ... are switches


@pytest.mark.integration  # runs the sae-kit CLI
def test_train_help_shows_what_repeatable_options_take():
    text = runner.invoke(app, ["train", "-h"], env={"COLUMNS": "200"}).output
    for shown in ("--layer N", "--hook-point NAME", "-O, --loss-option KEY=VALUE",
                  "--arch-option KEY=VALUE", "--tracker NAME"):
        assert shown in text, shown
    assert "<list[" not in text


@pytest.mark.parametrize(("option", "typo", "meant"), [
    ("--loss", "e2e_ds", "e2e+ds"), ("--loss", "E2E", "e2e"), ("--loss", "lcoal", "local"),
    ("--architecture", "TopK", "topk"), ("--architecture", "batch-topk", "batchtopk"),
])
@pytest.mark.integration  # runs the sae-kit CLI
def test_a_mistyped_plugin_name_gets_a_did_you_mean(option, typo, meant):
    result = runner.invoke(app, ["train", option, typo])
    assert result.exit_code == 2
    assert f"(did you mean {meant!r}?)" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_no_suggestion_for_a_name_like_none_of_them():
    assert did_you_mean("wandb", ["e2e", "e2e+ds", "local"]) == ""


@pytest.mark.parametrize(("args", "said"), [
    (["--lambda", "-1"], "sparsity_coeff=-1.0 must be >= 0 (--lambda"),
    (["--lr", "inf"], "lr=inf must be a finite number (not inf or nan)"),
    (["--seed", "-1"], "seed=-1 must be a whole number from 0 to 2**32-1"),
    (["--warmup-fraction", "1"], "warmup_fraction=1.0 must be from 0 up to (not including) 1"),
    (["--dict-ratio", "0", "--batch-size", "0"],
     "dict_ratio=0.0 must be > 0; batch_size=0 must be >= 1"),
])
@pytest.mark.integration  # runs the sae-kit CLI
def test_a_bad_setting_is_told_the_rule_it_breaks(args, said):
    result = runner.invoke(app, ["train", *args])
    assert result.exit_code == 2
    line = " ".join(result.stderr.split())
    assert f"invalid training settings: {said}" in line
    assert "finite" not in line or "inf" in " ".join(args)  # no rule that was not broken


@pytest.mark.integration  # runs the sae-kit CLI
def test_lambda_in_a_settings_file_for_topk_is_refused_as_the_flag_is(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('architecture = "topk"\nlambda = 2\n')
    result = runner.invoke(app, ["train", "--config", str(path)])
    assert result.exit_code == 2
    assert (f"{path}: lambda has no effect with the 'topk' architecture"
            in " ".join(result.stderr.split()))


def test_a_topk_runs_config_json_reruns_although_it_records_a_lambda(tmp_path):
    from sae_kit.train.api import load_config

    path = write_run_record(tmp_path / "run", architecture="topk", sparsity_coeff=1.0)
    config, _ = load_config(path)
    assert config.architecture == "topk"
    path.with_name("bad.toml").write_text('architecture = "batchtopk"\nlambda = [1, 2]\n')
    with pytest.raises(SaeKitError, match="lambda has no effect with the 'batchtopk'"):
        load_config(path.with_name("bad.toml"))


def test_counts_have_their_noun_in_the_right_number():
    assert [counted(n, "SAE") for n in (0, 1, 2, 1000)] == ["0 SAEs", "1 SAE", "2 SAEs",
                                                              "1,000 SAEs"]
