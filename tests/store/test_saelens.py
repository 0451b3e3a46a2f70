"""`sae-kit export/import --format saelens`: the layout, the maths, and SAELens itself."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from sae_kit import plugins
from sae_kit.architectures.base import SAE
from sae_kit.architectures.relu import ReluSAE
from sae_kit.architectures.topk import TopKSAE
from sae_kit.cli import app
from sae_kit.store.jsonio import write_json_atomic
from sae_kit.store.sae_dir import load_sae_dir
from tests.helpers import AUXK_OFF, SAE_D_IN, SAE_N_DICT, make_sae_dir

pytestmark = pytest.mark.integration  # runs the sae-kit CLI

runner = CliRunner()
D_IN, N_DICT, K = SAE_D_IN, SAE_N_DICT, 5
ARCHS = [pytest.param(ReluSAE, {}, id="relu"), pytest.param(TopKSAE, {"k": K}, id="topk")]


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
    sae, _ = load_sae_dir(sae_dir)
    x = x_batch()
    saelens_out = torch.relu(x @ w["W_enc"] + w["b_enc"]) @ w["W_dec"] + w["b_dec"]
    torch.testing.assert_close(saelens_out, sae(x).output, rtol=1e-5, atol=1e-5)


def test_export_writes_topk_with_k_where_saelens_reads_it(tmp_path):
    sae_dir = make_sae_dir(tmp_path, arch=TopKSAE, k=K)
    assert invoke("export", str(sae_dir), str(tmp_path / "sl")).exit_code == 0
    cfg = json.loads((tmp_path / "sl" / "cfg.json").read_text())
    assert (cfg["architecture"], cfg["k"], cfg["activation_fn_kwargs"]) == ("topk", K, {"k": K})
    assert cfg["rescale_acts_by_decoder_norm"] is False
    w = load_file(str(tmp_path / "sl" / "sae_weights.safetensors"))
    torch.testing.assert_close(w["W_dec"].norm(dim=1), torch.ones(N_DICT))
    x = x_batch()
    pre = x @ w["W_enc"] + w["b_enc"]
    assert ((pre > 0).sum(-1) > K).all()  # so the top-k choice matters for every token
    top = pre.topk(K, dim=-1)  # SAELens: the k largest, then ReLU
    codes = torch.zeros_like(pre).scatter(-1, top.indices, top.values.relu())
    sae, _ = load_sae_dir(sae_dir)
    torch.testing.assert_close(codes @ w["W_dec"] + w["b_dec"], sae(x).output,
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("arch", "options"), ARCHS)
def test_export_then_import_gives_the_same_sae(tmp_path, arch, options):
    sae_dir = make_sae_dir(tmp_path, arch=arch, **options)
    assert invoke("export", str(sae_dir), str(tmp_path / "sl")).exit_code == 0
    result = invoke("import", "--format", "saelens", str(tmp_path / "sl"), str(tmp_path / "back"))
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == str(tmp_path / "back")
    original, config = load_sae_dir(sae_dir)
    back, back_config = load_sae_dir(tmp_path / "back")
    x = x_batch()
    # Equal up to float32 rounding: the decoder is normalised once more on the way back.
    torch.testing.assert_close(back(x).output, original(x).output, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(back(x).codes, original(x).codes, rtol=1e-5, atol=1e-5)
    for key in ("architecture", "options", "hook_point", "model", "loss", "sparsity_coeff",
                "dataset", "tokens_trained"):
        assert back_config[key] == config[key]
    auxk = AUXK_OFF if "k" in options else {}
    assert back_config["options"] == {**auxk, "bias_init": "zeros", **options}  # k comes back


@pytest.mark.parametrize(("ours", "theirs"), [
    ("blocks.1.hook_attn_out", "blocks.1.hook_attn_out"),
    ("blocks.1.hook_mlp_out", "blocks.1.hook_mlp_out"),
    ("blocks.1.hook_mlp_in", "blocks.1.ln2.hook_normalized"),  # the normed MLP input
])
def test_hook_points_inside_a_layer_export_under_their_transformer_lens_names(tmp_path, ours,
                                                                             theirs):
    sae_dir = make_sae_dir(tmp_path, hook_point=ours)
    assert invoke("export", str(sae_dir), str(tmp_path / "sl")).exit_code == 0
    cfg = json.loads((tmp_path / "sl" / "cfg.json").read_text())
    assert (cfg["hook_name"], cfg["hook_layer"]) == (theirs, 1)
    assert invoke("import", str(tmp_path / "sl"), str(tmp_path / "back")).exit_code == 0
    _, back_config = load_sae_dir(tmp_path / "back")
    assert back_config["hook_point"] == ours


def test_export_refuses_a_module_path_before_writing(tmp_path):
    sae_dir = make_sae_dir(tmp_path, hook_point="transformer.h.1.mlp.c_fc")
    result = invoke("export", str(sae_dir), str(tmp_path / "sl"))
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "has no SAELens (TransformerLens) hook name" in " ".join(result.stderr.split())
    assert not (tmp_path / "sl").exists()


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
    sae, config = load_sae_dir(tmp_path / "kit")
    assert config["hook_point"] == "blocks.3.hook_resid_post" and config["model"] == "gpt2-small"
    x = x_batch()
    expected = torch.relu((x - w["b_dec"]) @ w["W_enc"] + w["b_enc"]) @ w["W_dec"] + w["b_dec"]
    torch.testing.assert_close(sae(x).output, expected, rtol=1e-5, atol=1e-4)
    assert sae(x).codes[:, 5].abs().max() == 0


def write_saelens_dir(src: Path, cfg: dict, w: dict[str, torch.Tensor]) -> Path:
    src.mkdir()
    save_file(w, str(src / "sae_weights.safetensors"))
    write_json_atomic(src / "cfg.json", {"d_in": D_IN, "d_sae": N_DICT, "dtype": "float32",
                                         "normalize_activations": "none", **cfg})
    return src


def saelens_topk(x: torch.Tensor, w: dict[str, torch.Tensor], k: int, rescale: bool):
    """SAELens' TopK SAE, by hand: the inputs centred by b_dec, top k chosen, then ReLU."""
    pre = (x - w["b_dec"]) @ w["W_enc"] + w["b_enc"]
    norms = w["W_dec"].norm(dim=1) if rescale else torch.ones(N_DICT)
    top = (pre * norms).topk(k, dim=-1)
    codes = torch.zeros_like(pre).scatter(-1, top.indices, top.values.relu())
    return codes, (codes / norms) @ w["W_dec"] + w["b_dec"]


@pytest.mark.parametrize("rescale", [True, False])
def test_import_topk_folds_decoder_norms_only_where_saelens_ranks_scaled_acts(tmp_path, rescale):
    g = torch.Generator().manual_seed(3)
    w = {"W_enc": torch.randn(D_IN, N_DICT, generator=g),
         "b_enc": torch.randn(N_DICT, generator=g),
         "W_dec": torch.randn(N_DICT, D_IN, generator=g) * torch.linspace(0.1, 4, N_DICT)[:, None],
         "b_dec": torch.randn(D_IN, generator=g)}
    src = write_saelens_dir(tmp_path / "sl", {
        "architecture": "topk", "k": 3, "rescale_acts_by_decoder_norm": rescale,
        "apply_b_dec_to_input": True, "metadata": {"hook_name": "blocks.2.hook_resid_post",
                                                   "sae_lens_version": "6.54.12"}}, w)
    result = invoke("import", str(src), str(tmp_path / "kit"))
    if not rescale:  # SAELens ranks the unscaled acts: unit columns cannot reproduce that
        assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1
        norms = w["W_dec"].norm(dim=1)
        assert (f"topk decoder rows differ in norm ({norms.min():.4g} to {norms.max():.4g}) and "
                "rescale_acts_by_decoder_norm is false") in " ".join(result.stderr.split())
        assert not (tmp_path / "kit").exists()
        return
    assert result.exit_code == 0, result.output
    sae, config = load_sae_dir(tmp_path / "kit")
    assert (config["architecture"], config["options"]) == (
        "topk", {**AUXK_OFF, "bias_init": "zeros", "k": 3})
    x = x_batch()
    codes, expected = saelens_topk(x, w, 3, rescale=True)
    torch.testing.assert_close(sae(x).output, expected, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(sae(x).codes, codes, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_pre_6_topk_cfg_with_one_decoder_norm_imports_as_topk(tmp_path, dtype):
    """SAELens before 6.0 wrote TopK as a standard SAE with activation_fn_str 'topk'."""
    g = torch.Generator().manual_seed(4)
    w = {"W_enc": torch.randn(D_IN, N_DICT, generator=g),
         "b_enc": torch.randn(N_DICT, generator=g),
         "W_dec": torch.nn.functional.normalize(torch.randn(N_DICT, D_IN, generator=g), dim=1) * 2,
         "b_dec": torch.randn(D_IN, generator=g)}
    w = {k: v.to(dtype) for k, v in w.items()}  # bfloat16 rounding: norms 2 +- 0.004
    src = write_saelens_dir(tmp_path / "sl", {
        "architecture": "standard", "activation_fn_str": "topk",
        "activation_fn_kwargs": {"k": 4}, "hook_name": "blocks.0.hook_resid_pre"}, w)
    result = invoke("import", str(src), str(tmp_path / "kit"))
    assert result.exit_code == 0, result.output
    sae, config = load_sae_dir(tmp_path / "kit")
    assert (config["architecture"], config["options"]) == (
        "topk", {**AUXK_OFF, "bias_init": "zeros", "k": 4})
    x = torch.randn(4096, D_IN, generator=g) * 3  # enough tokens for near-ties at the k-th place
    # no apply_b_dec_to_input: the pre-6 default centres the input
    codes, expected = saelens_topk(x, {k: v.float() for k, v in w.items()}, 4, rescale=False)
    assert torch.equal(sae(x).codes != 0, codes != 0)  # the same k latents win, always
    tol = 1e-5 if dtype == torch.float32 else 1e-2  # a decoder row's norm error, at most
    torch.testing.assert_close(sae(x).output, expected, rtol=tol, atol=tol * expected.abs().max())


def test_a_run_directory_exports_one_folder_per_sae(tmp_path):
    run = tmp_path / "run"
    make_sae_dir(run, layer=0)
    make_sae_dir(run, layer=2, seed=1)
    result = invoke("export", str(run), str(tmp_path / "sl"))
    assert result.exit_code == 0, result.output
    for hook in ("blocks.0.hook_resid_pre", "blocks.2.hook_resid_pre"):
        assert json.loads((tmp_path / "sl" / hook / "cfg.json").read_text())["hook_name"] == hook


TOPK = {"architecture": "topk", "activation_fn_str": "topk"}  # over an exported relu SAE


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"architecture": "gated"},
         "architecture 'gated' (only 'standard', 'topk', 'jumprelu' import)"),
        ({"architecture": "topk"}, "activation 'relu' for architecture 'topk'"),
        ({**TOPK, "activation_fn_kwargs": {}}, "missing k"),
        ({**TOPK, "k": 2.5}, "k 2.5 (want a whole number)"),
        ({**TOPK, "k": 99}, "topk option k=99 must be between 1 and the dictionary size 24"),
        ({"normalize_activations": "layer_norm"}, "normalize_activations 'layer_norm'"),
        ({"hook_name": "blocks.0.attn.hook_z"},
         "SAELens hook 'blocks.0.attn.hook_z' has no sae-kit hook point"),
        ({"hook_name": "blocks.0.hook_resid_mid"}, "unknown hook point kind hook_resid_mid"),
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


def test_import_refuses_non_float_weights(tmp_path):
    w = {"W_enc": torch.ones(D_IN, N_DICT, dtype=torch.int32), "b_enc": torch.zeros(N_DICT),
         "W_dec": torch.ones(N_DICT, D_IN), "b_dec": torch.zeros(D_IN)}
    src = write_saelens_dir(tmp_path / "sl", {"hook_name": "blocks.0.hook_resid_pre"}, w)
    result = invoke("import", str(src), str(tmp_path / "kit"))
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "holds non-float tensors" in result.stderr and not (tmp_path / "kit").exists()


class TanhSAE(SAE):
    name = "tanh"

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(torch.relu(x @ self.W_enc.T + self.b_enc))


def test_export_refuses_an_architecture_saelens_lacks(tmp_path, monkeypatch):
    load = plugins.load
    monkeypatch.setattr(plugins, "load", lambda kind, name: TanhSAE if name == "tanh"
                        else load(kind, name))
    sae_dir = make_sae_dir(tmp_path, arch=TanhSAE)
    result = invoke("export", str(sae_dir), str(tmp_path / "sl"))
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1
    assert ("no SAELens equivalent for the 'tanh' architecture; SAELens export supports: "
            "relu, topk, jumprelu, batchtopk, matryoshka") in " ".join(result.stderr.split())
    assert not (tmp_path / "sl").exists()


def test_bad_export_arguments_are_one_clear_line(tmp_path):
    sae_dir = make_sae_dir(tmp_path)
    result = invoke("export", "--format", "onnx", str(sae_dir), str(tmp_path / "x"))
    assert result.exit_code == 2 and "unknown format 'onnx'; supported: saelens" in result.stderr
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "f").write_text("")
    result = invoke("export", str(sae_dir), str(tmp_path / "busy"))
    assert result.exit_code == 2 and "already exists and is not empty" in result.stderr


@pytest.mark.filterwarnings(r"ignore:\s*This SAE has non-empty model_from_pretrained:UserWarning")
@pytest.mark.parametrize(("arch", "options"), ARCHS)
def test_saelens_loads_the_export(tmp_path, arch, options):
    sae_lens = pytest.importorskip(
        "sae_lens", reason="sae-lens is not installed (optional: pip install sae-lens)")
    sae_dir = make_sae_dir(tmp_path, arch=arch, **options)
    assert invoke("export", str(sae_dir), str(tmp_path / "sl")).exit_code == 0
    loaded = sae_lens.SAE.load_from_disk(str(tmp_path / "sl"), device="cpu")
    assert loaded.cfg.architecture() == {"relu": "standard", "topk": "topk"}[arch.name]
    assert getattr(loaded.cfg, "k", None) == options.get("k")
    assert loaded.cfg.metadata.hook_name == "blocks.1.hook_resid_pre"
    assert loaded.cfg.metadata.model_name == "gpt2"
    assert loaded.cfg.metadata.model_from_pretrained_kwargs["center_writing_weights"] is False
    sae, _ = load_sae_dir(sae_dir)
    x = x_batch()
    with torch.no_grad():
        torch.testing.assert_close(loaded.decode(loaded.encode(x)), sae(x).output,
                                   rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(loaded.encode(x), sae(x).codes, rtol=1e-5, atol=1e-5)


def test_sae_kit_imports_a_topk_sae_saelens_saved(tmp_path):
    pytest.importorskip(
        "sae_lens", reason="sae-lens is not installed (optional: pip install sae-lens)")
    from sae_lens.saes.sae import SAEMetadata
    from sae_lens.saes.topk_sae import TopKSAE as SaeLensTopK
    from sae_lens.saes.topk_sae import TopKSAEConfig

    torch.manual_seed(5)
    theirs = SaeLensTopK(TopKSAEConfig(
        d_in=D_IN, d_sae=N_DICT, k=3, rescale_acts_by_decoder_norm=True, dtype="float32",
        device="cpu", metadata=SAEMetadata(hook_name="blocks.1.hook_resid_post")))
    with torch.no_grad():  # SAELens initialises b_enc and b_dec to zero: give them values
        for p in (theirs.b_enc, theirs.b_dec):
            p.normal_()
        theirs.W_dec.mul_(torch.linspace(0.2, 5.0, N_DICT)[:, None])
    theirs.save_model(str(tmp_path / "sl"))
    result = invoke("import", str(tmp_path / "sl"), str(tmp_path / "kit"))
    assert result.exit_code == 0, result.output
    sae, config = load_sae_dir(tmp_path / "kit")
    assert config["options"] == {**AUXK_OFF, "k": 3, "bias_init": "zeros"}  # every option, typed
    x = x_batch()
    with torch.no_grad():
        torch.testing.assert_close(sae(x).output, theirs.decode(theirs.encode(x)),
                                   rtol=1e-5, atol=1e-4)
        torch.testing.assert_close(sae(x).codes, theirs.encode(x), rtol=1e-5, atol=1e-5)
