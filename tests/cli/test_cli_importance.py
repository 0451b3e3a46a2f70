"""`sae-kit importance` through the CLI on a tiny e2e run: files, fields, bad input."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from sae_kit.cli import app
from sae_kit.eval.analysis.attribution import CONVENTIONS, METRICS

pytestmark = pytest.mark.integration  # runs the sae-kit CLI

runner = CliRunner()
HP = "blocks.1.hook_resid_pre"
BASE = ["--tokens", "96", "--device", "cpu", "--batch-size", "2"]


@pytest.fixture(scope="module")
def importance(runs, tmp_path_factory):
    out = tmp_path_factory.mktemp("importance")
    result = runner.invoke(app, ["importance", str(runs["e2e0"]), *BASE, "--exact-top", "5",
                                 "--exact-random", "4", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(out / f"importance-{HP}" / "importance.json")
    return out / f"importance-{HP}"


def test_files_and_fields(importance):
    data = json.loads((importance / "importance.json").read_text())
    meta, summary = data["meta"], data["summary"]
    assert meta["n_tokens"] == 96 and meta["hook_point"] == HP and meta["n_dict"] == 128
    assert meta["default_convention"] == "spliced" and meta["conventions"] == list(CONVENTIONS)
    tensors = load_file(str(importance / "importance.safetensors"))
    assert tensors["exact_features"].shape == (9,) and int(tensors["exact_is_top"].sum()) == 5
    top = tensors["exact_features"][:5].long()
    abs_kl = tensors["spliced.kl.attribution_abs"]
    assert torch.equal(torch.sort(abs_kl[top], descending=True).values, abs_kl[top])
    assert float(abs_kl[top].min()) == float(torch.sort(abs_kl, descending=True).values[4])
    assert torch.all(tensors["count"][tensors["exact_features"].long()] > 0)
    for c in CONVENTIONS:
        for m in METRICS:
            attribution = tensors[f"{c}.{m}.attribution"]
            assert attribution.shape == (128,)
            assert torch.all(tensors[f"{c}.{m}.attribution_abs"] >= attribution.abs() - 1e-12)
            dead = tensors["count"] == 0
            assert torch.all(attribution[dead] == 0)
            assert tensors[f"{c}.{m}.exact"].shape == (9,)
            entry = summary[c][m]
            assert set(entry["share_of_abs_attribution"]) == {"top_1pct", "top_10pct"}
            assert entry["spearman_attribution_vs_exact"] is None or \
                -1 <= entry["spearman_attribution_vs_exact"] <= 1
    firing = tensors["count"].double() / 96
    assert torch.allclose(tensors["density"], firing)
    assert summary["spliced"]["kl"]["whole_sae"] > 0
    assert abs(summary["with_error"]["kl"]["whole_sae"]) < 1e-6  # the model is the original


def test_density_against_importance_plot(importance):
    import matplotlib.image

    image = matplotlib.image.imread(importance / "density_importance.png")  # fails if corrupt
    assert image.shape[:2] == (704, 990)  # 2 x 2 panels, 9 x 6.4 in at 110 dpi
    assert float(image[..., :3].std()) > 0.05  # something is drawn


def test_every_sae_by_default_and_out_inside_the_run(runs, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(runs["e2e0"], run)
    result = runner.invoke(app, ["importance", str(run), *BASE, "--exact-top", "1",
                                 "--exact-random", "0"])
    assert result.exit_code == 0, result.output
    assert (run / f"importance-{HP}" / "importance.safetensors").is_file()
    assert "spliced: KL" in result.stderr and "with error: KL" in result.stderr


def _mismatched(runs, tmp_path):
    run = tmp_path / "mismatch"
    shutil.copytree(runs["e2e0"], run)
    config = run / HP / "config.json"
    settings = json.loads(config.read_text())
    settings["model"] = "sae-kit-tiny"  # the built-in model is wider than the tiny GPT-2
    config.write_text(json.dumps(settings))
    return run


@pytest.mark.parametrize("args, message", [
    (["--tokens", "0"], "--tokens"),
    (["--hook-point", "blocks.2.hook_resid_pre"], "has no SAE at blocks.2.hook_resid_pre"),
    (["--exact-top", "129"], "at most the dictionary size (128)"),
    (["--exact-random", "-1"], "0 or more"),
])
def test_bad_input_is_one_line(runs, args, message):
    result = runner.invoke(app, ["importance", str(runs["e2e0"]), *BASE, *args])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith("error:") and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_run_without_saes_and_model_mismatch(runs, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "config.json").write_text("{}")
    for run, message in ((empty, "holds no trained SAE"),
                         (_mismatched(runs, tmp_path), "takes width 32")):
        result = runner.invoke(app, ["importance", str(run), *BASE])
        assert result.exit_code == 2, result.output
        assert result.stderr.startswith("error:") and message in result.stderr


def test_compare_shows_importance_distributions_side_by_side(runs, importance, tmp_path):
    """`sae-kit compare --importance`: each SAE's attribution is `sae-kit importance`'s on the
    same tokens, and its concentration summary follows from those values."""
    import matplotlib.image

    result = runner.invoke(app, ["compare", str(runs["e2e0"]), str(runs["local0"]), *BASE,
                                 "--importance", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "importance (KL, spliced)" in result.stdout
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert "importance.png" in summary["plots"]
    image = matplotlib.image.imread(tmp_path / "importance.png")
    assert image.shape[:2] == (418, 1320) and float(image[..., :3].std()) > 0.05
    tensors = load_file(str(tmp_path / "importance.safetensors"))
    alone = load_file(str(importance / "importance.safetensors"))
    for c in CONVENTIONS:
        for m in METRICS:
            assert torch.allclose(tensors[f"e2e0/{c}.{m}.attribution_abs"],
                                  alone[f"{c}.{m}.attribution_abs"], rtol=1e-5, atol=1e-12)
    for label in ("e2e0", "local0"):
        entry = summary["saes"][label]["importance"]
        assert entry["n_tokens"] == 96
        values = tensors[f"{label}/spliced.kl.attribution_abs"]
        kl = entry["spliced"]["kl"]
        assert kl["total_abs_attribution"] == pytest.approx(float(values.sum()))
        shares = list(kl["share_of_abs_attribution"].values())
        assert shares == sorted(shares) and shares[-1] == pytest.approx(1.0)
        ordered = torch.sort(values, descending=True).values
        half = kl["features_for_50pct"]  # the fewest features that carry half of the total
        assert ordered[:half].sum() >= 0.5 * ordered.sum() > ordered[:half - 1].sum()
        assert kl["share_of_abs_attribution"]["top_10pct"] == pytest.approx(
            float(ordered[:13].sum() / ordered.sum()))  # ceil(0.1 * 128) features
