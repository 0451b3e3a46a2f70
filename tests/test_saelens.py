"""`sae-kit export/import --format saelens`: the layout, the maths, and SAELens itself."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from sae_kit.architectures.relu import ReluSAE
from sae_kit.cli import app
from sae_kit.hookpoints import HookPoint
from sae_kit.sae_io import load_sae, save_sae, write_json_atomic

runner = CliRunner()
D_IN, N_DICT = 8, 24


def make_sae_dir(path: Path, layer: int = 1, seed: int = 0) -> Path:
    """An SAE with a non-zero b_dec and decoder columns of very different norms."""
    torch.manual_seed(seed)
    sae = ReluSAE(D_IN, N_DICT)
    with torch.no_grad():
        sae.W_dec.mul_(torch.linspace(0.2, 5.0, N_DICT))
        sae.b_enc.normal_()
        sae.b_dec.normal_()
    extra = {"model": "gpt2", "revision": None, "loss": "e2e", "sparsity_coeff": 1.5,
             "dataset": "Skylion007/openwebtext", "context": 64, "tokens_trained": 1000}
    return save_sae(sae, HookPoint(layer), path / HookPoint(layer).name, extra)


def x_batch() -> torch.Tensor:
    return torch.randn(16, D_IN, generator=torch.Generator().manual_seed(1)) * 3


def invoke(*args: str):
    return runner.invoke(app, list(args))


def test_export_writes_the_saelens_layout(tmp_path):
    sae_dir = make_sae_dir(tmp_path)
    result = invoke("export", "--format", "saelens", str(sae_dir), str(tmp_path / "sl"))
    assert result.exit_code == 0, result.output
    cfg = json.loads((tmp_path / "sl" / "cfg.json").read_text())
    assert (cfg["architecture"], cfg["d_in"], cfg["d_sae"]) == ("standard", D_IN, N_DICT)
    assert (cfg["hook_name"], cfg["hook_layer"], cfg["model_name"]) == (
        "blocks.1.hook_resid_pre", 1, "gpt2")
    assert cfg["apply_b_dec_to_input"] is False and cfg["normalize_activations"] == "none"
    assert (cfg["context_size"], cfg["dataset_path"]) == (64, "Skylion007/openwebtext")
    w = load_file(str(tmp_path / "sl" / "sae_weights.safetensors"))
    assert w["W_enc"].shape == (D_IN, N_DICT) and w["W_dec"].shape == (N_DICT, D_IN)
    torch.testing.assert_close(w["W_dec"].norm(dim=1), torch.ones(N_DICT))  # folded in
    sae, _ = load_sae(sae_dir)
    x = x_batch()
    saelens_out = torch.relu(x @ w["W_enc"] + w["b_enc"]) @ w["W_dec"] + w["b_dec"]
    torch.testing.assert_close(saelens_out, sae(x).output, rtol=1e-5, atol=1e-5)


def test_export_then_import_gives_the_same_sae(tmp_path):
    sae_dir = make_sae_dir(tmp_path)
    assert invoke("export", str(sae_dir), str(tmp_path / "sl")).exit_code == 0
    result = invoke("import", "--format", "saelens", str(tmp_path / "sl"), str(tmp_path / "back"))
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(tmp_path / "back")
    original, config = load_sae(sae_dir)
    back, back_config = load_sae(tmp_path / "back")
    x = x_batch()
    # Equal up to float32 rounding: the decoder is normalised once more on the way back.
    torch.testing.assert_close(back(x).output, original(x).output, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(back(x).codes, original(x).codes, rtol=1e-5, atol=1e-5)
    for key in ("hook_point", "model", "loss", "sparsity_coeff", "dataset", "tokens_trained"):
        assert back_config[key] == config[key]


def test_import_folds_decoder_norms_and_input_centring(tmp_path):
    """A typical SAELens SAE: b_dec subtracted from the input, decoder rows of any norm."""
    g = torch.Generator().manual_seed(2)
    w = {"W_enc": torch.randn(D_IN, N_DICT, generator=g),
         "b_enc": torch.randn(N_DICT, generator=g),
         "W_dec": torch.randn(N_DICT, D_IN, generator=g) * 3,
         "b_dec": torch.randn(D_IN, generator=g)}
    w["W_dec"][5] = 0.0  # a dead feature
    src = tmp_path / "sl"
    src.mkdir()
    save_file(w, str(src / "sae_weights.safetensors"))
    write_json_atomic(src / "cfg.json", {
        "architecture": "standard", "d_in": D_IN, "d_sae": N_DICT, "dtype": "float32",
        "apply_b_dec_to_input": True, "normalize_activations": "none",
        "metadata": {"hook_name": "blocks.3.hook_resid_post", "model_name": "gpt2-small",
                     "sae_lens_version": "6.5.0"}})
    result = invoke("import", str(src), str(tmp_path / "kit"))
    assert result.exit_code == 0, result.output
    sae, config = load_sae(tmp_path / "kit")
    assert config["hook_point"] == "blocks.3.hook_resid_post" and config["model"] == "gpt2-small"
    x = x_batch()
    expected = torch.relu((x - w["b_dec"]) @ w["W_enc"] + w["b_enc"]) @ w["W_dec"] + w["b_dec"]
    torch.testing.assert_close(sae(x).output, expected, rtol=1e-5, atol=1e-4)
    assert sae(x).codes[:, 5].abs().max() == 0


def test_a_run_directory_exports_one_folder_per_sae(tmp_path):
    run = tmp_path / "run"
    make_sae_dir(run, layer=0)
    make_sae_dir(run, layer=2, seed=1)
    result = invoke("export", str(run), str(tmp_path / "sl"))
    assert result.exit_code == 0, result.output
    for hook in ("blocks.0.hook_resid_pre", "blocks.2.hook_resid_pre"):
        assert json.loads((tmp_path / "sl" / hook / "cfg.json").read_text())["hook_name"] == hook


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"architecture": "jumprelu"}, "architecture 'jumprelu' (only 'standard' imports)"),
        ({"normalize_activations": "layer_norm"}, "normalize_activations 'layer_norm'"),
        ({"hook_name": "blocks.0.hook_mlp_out"}, "bad hook point 'blocks.0.hook_mlp_out'"),
        ({"d_sae": 7}, "does not match its cfg.json: W_enc (8, 24) (want (8, 7))"),
    ],
)
def test_unimportable_saelens_sae_is_one_clear_line(tmp_path, change, message):
    sae_dir = make_sae_dir(tmp_path)
    assert invoke("export", str(sae_dir), str(tmp_path / "sl")).exit_code == 0
    cfg_path = tmp_path / "sl" / "cfg.json"
    cfg_path.write_text(json.dumps({**json.loads(cfg_path.read_text()), **change}))
    result = invoke("import", str(tmp_path / "sl"), str(tmp_path / "kit"))
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1
    assert message in " ".join(result.stderr.split())
    assert not (tmp_path / "kit").exists()


def test_bad_export_arguments_are_one_clear_line(tmp_path):
    sae_dir = make_sae_dir(tmp_path)
    result = invoke("export", "--format", "onnx", str(sae_dir), str(tmp_path / "x"))
    assert result.exit_code == 2 and "unknown format 'onnx'; supported: saelens" in result.stderr
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "f").write_text("")
    result = invoke("export", str(sae_dir), str(tmp_path / "busy"))
    assert result.exit_code == 2 and "already exists and is not empty" in result.stderr


@pytest.mark.filterwarnings(r"ignore:\s*This SAE has non-empty model_from_pretrained:UserWarning")
def test_saelens_loads_the_export(tmp_path):
    sae_lens = pytest.importorskip(
        "sae_lens", reason="sae-lens is not installed (optional: pip install sae-lens)")
    sae_dir = make_sae_dir(tmp_path)
    assert invoke("export", str(sae_dir), str(tmp_path / "sl")).exit_code == 0
    loaded = sae_lens.SAE.load_from_disk(str(tmp_path / "sl"), device="cpu")
    assert loaded.cfg.metadata.hook_name == "blocks.1.hook_resid_pre"
    assert loaded.cfg.metadata.model_name == "gpt2"
    assert loaded.cfg.metadata.model_from_pretrained_kwargs["center_writing_weights"] is False
    sae, _ = load_sae(sae_dir)
    x = x_batch()
    with torch.no_grad():
        torch.testing.assert_close(loaded.decode(loaded.encode(x)), sae(x).output,
                                   rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(loaded.encode(x), sae(x).codes, rtol=1e-5, atol=1e-5)
