"""`sae-kit cache` and `train --clean-cache`: the same results as running the clean model, and
one line when the cache does not fit the run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from sae_kit.cli import app
from tests.helpers import cli_train

runner = CliRunner()
DATA = ["--dataset", "pydoc", "--context", "32", "--batch-size", "2", "--n-samples", "8",
        "--device", "cpu"]
"""tests.helpers.FAST's options that set the clean pass (the cache takes no --log-every)."""
MISS = "not in the clean cache"


def write(model: Path, out: Path, *extra: str):
    return runner.invoke(app, ["cache", str(out), "--model", str(model), *DATA, *extra])


def weights(run: Path) -> dict[str, torch.Tensor]:
    return {p.parent.name + "/" + k: v for p in sorted(run.glob("**/sae.safetensors"))
            for k, v in load_file(str(p)).items()}


def metrics(run: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    for row in rows:
        row.pop("tokens_per_s")
    return rows


def assert_same_run(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    assert wa and wa.keys() == wb.keys()
    assert all(torch.equal(wa[k], wb[k]) for k in wa), "weights differ"
    assert metrics(a) == metrics(b)


@pytest.fixture(scope="module")
def caches(tiny_gpt2, tmp_path_factory):
    """A cache per loss at layer 1 of the tiny GPT-2."""
    root = tmp_path_factory.mktemp("caches")
    made = {}
    for loss in ("e2e", "e2e+ds", "local"):
        result = write(tiny_gpt2, root / loss, "--loss", loss, "--layer", "1")
        assert result.exit_code == 0, result.output
        assert result.stdout.strip() == str(root / loss)
        made[loss] = root / loss
    return made


@pytest.mark.integration
@pytest.mark.parametrize("loss", ["e2e", "e2e+ds", "local"])
def test_a_run_reading_the_cache_equals_one_running_the_model(tiny_gpt2, caches, tmp_path,
                                                              loss, one_thread):
    live = cli_train(tiny_gpt2, tmp_path / "live", "--loss", loss, "--layer", "1")
    cached = cli_train(tiny_gpt2, tmp_path / "cached", "--loss", loss, "--layer", "1",
                       "--clean-cache", str(caches[loss]))
    assert live.exit_code == 0 and cached.exit_code == 0, cached.output
    assert MISS not in cached.output  # every batch came from the cache
    assert_same_run(tmp_path / "live", tmp_path / "cached")
    saved = json.loads((tmp_path / "cached" / "config.json").read_text())
    assert saved["clean_cache"] == str(caches[loss])


@pytest.mark.integration
def test_other_seeds_and_lambdas_read_the_same_cache(tiny_gpt2, caches, tmp_path, one_thread):
    args = ["--loss", "e2e", "--layer", "1", "--seed", "1", "--lambda", "0.5,2"]
    live = cli_train(tiny_gpt2, tmp_path / "live", *args)
    cached = cli_train(tiny_gpt2, tmp_path / "cached", *args, "--clean-cache",
                       str(caches["e2e"]))
    assert live.exit_code == 0 and cached.exit_code == 0, cached.output
    assert MISS not in cached.output
    for member in ("lambda0.5", "lambda2"):
        assert_same_run(tmp_path / "live" / member, tmp_path / "cached" / member)


@pytest.mark.integration
def test_windows_the_cache_lacks_are_computed(tiny_gpt2, tmp_path, one_thread):
    assert write(tiny_gpt2, tmp_path / "c", "--layer", "1", "--windows", "3").exit_code == 0
    index = json.loads((tmp_path / "c" / "cache.json").read_text())
    # the residual and the final hidden states (fp32, d_model 32) and the token id, per token
    assert index["windows"] == 3 and index["bytes_per_token"] == 2 * 32 * 4 + 8
    assert cli_train(tiny_gpt2, tmp_path / "live", "--layer", "1").exit_code == 0
    cached = cli_train(tiny_gpt2, tmp_path / "cached", "--layer", "1", "--clean-cache",
                       str(tmp_path / "c"))
    assert cached.exit_code == 0, cached.output
    assert MISS in cached.output
    assert_same_run(tmp_path / "live", tmp_path / "cached")


def _one_line(result, *words: str) -> str:
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    for word in words:
        assert word in lines[0], lines[0]
    return lines[0]


@pytest.mark.integration
def test_a_cache_for_other_settings_is_refused_in_one_line(tiny_gpt2, caches, tmp_path):
    def train(*extra: str):
        return cli_train(tiny_gpt2, tmp_path / "run", "--layer", "1", *extra)

    _one_line(train("--clean-cache", str(caches["e2e"]), "--context", "16"),
              "context 32", "16")
    _one_line(train("--clean-cache", str(caches["e2e"]), "--dtype", "bf16"), "dtype", "bf16")
    _one_line(train("--clean-cache", str(caches["local"])), "final hidden states", "--loss")
    _one_line(train("--loss", "e2e+ds", "--clean-cache", str(caches["e2e"])), "position")
    _one_line(train("--clean-cache", str(tmp_path / "nowhere")), "does not exist")
    (tmp_path / "cut").mkdir()
    _one_line(train("--clean-cache", str(tmp_path / "cut")), "no finished clean cache")
    assert not (tmp_path / "run").exists()  # refused before anything was written


@pytest.mark.integration
def test_a_cache_of_another_model_is_refused(tiny_gpt2, caches, tmp_path, tiny_tokenizer_dir):
    from transformers import GPT2LMHeadModel

    from tests.helpers import save_tiny_model

    torch.manual_seed(1)  # same shapes, other weights
    other = save_tiny_model(GPT2LMHeadModel.from_pretrained(tiny_gpt2).apply(_reinit),
                            tiny_tokenizer_dir, tmp_path / "other")
    result = cli_train(other, tmp_path / "run", "--layer", "1", "--clean-cache",
                       str(caches["e2e"]))
    _one_line(result, "unembedding_sha256")


def _reinit(module: torch.nn.Module) -> None:
    if isinstance(module, (torch.nn.Linear, torch.nn.Embedding)):
        torch.nn.init.normal_(module.weight, std=0.02)


@pytest.mark.integration
def test_cache_command_bad_input(tiny_gpt2, caches, tmp_path):
    _one_line(write(tiny_gpt2, caches["e2e"]), "not empty")
    _one_line(write(tiny_gpt2, tmp_path / "c", "--windows", "0"), "--windows")
    assert not (tmp_path / "c").exists()



@pytest.mark.integration
def test_hook_points_inside_a_layer(tiny_gpt2, tmp_path, one_thread):
    """e2e at hook_mlp_out reads the residual at the layer's input: cached. local there reads
    the MLP's output, which the cache does not hold: refused in one line, nothing written."""
    hook = ["--hook-point", "blocks.1.hook_mlp_out"]
    _one_line(write(tiny_gpt2, tmp_path / "local", "--loss", "local", *hook),
              "residual stream only", "blocks.1.hook_mlp_out", "--clean-cache")
    assert not (tmp_path / "local").exists()
    result = write(tiny_gpt2, tmp_path / "e2e", "--loss", "e2e", *hook)
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "e2e" / "cache.json").read_text())["positions"] == [1]
    cached = cli_train(tiny_gpt2, tmp_path / "cached", "--loss", "e2e", *hook,
                       "--clean-cache", str(tmp_path / "e2e"))
    assert cached.exit_code == 0 and MISS not in cached.output, cached.output
    live = _live(tiny_gpt2, tmp_path / "live", "--loss", "e2e", *hook)
    assert_same_run(tmp_path / "cached", live)


def _live(model: Path, out: Path, *extra: str) -> Path:
    result = cli_train(model, out, *extra)
    assert result.exit_code == 0, result.output
    return out
