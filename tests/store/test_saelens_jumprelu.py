"""SAELens interop of jumprelu, batchtopk and matryoshka: all three are JumpReLU in SAELens
(per-latent threshold), and the round trips go through the real ``sae_lens`` package."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from sae_kit.architectures.batchtopk import BatchTopKSAE
from sae_kit.architectures.jumprelu import JumpReLUSAE
from sae_kit.architectures.matryoshka import MatryoshkaSAE
from sae_kit.cli import app
from sae_kit.model.hookpoints import HookPoint
from sae_kit.store.sae_dir import load_sae_dir, save_sae

pytestmark = pytest.mark.integration  # runs the sae-kit CLI

runner = CliRunner()
D_IN, N_DICT = 8, 24
EXTRA = {"model": "gpt2", "revision": None, "loss": "e2e", "sparsity_coeff": 0.0,
         "dataset": "pydoc", "context": 16, "tokens_trained": 512}
ARCHS = [
    pytest.param(JumpReLUSAE, {"bandwidth": 0.05, "init_threshold": 0.5}, id="jumprelu"),
    pytest.param(BatchTopKSAE, {"k": 4}, id="batchtopk"),
    pytest.param(MatryoshkaSAE, {"k": 4, "prefixes": "6,12", "auxk": True}, id="matryoshka"),
]


def x_batch(seed: int = 1) -> torch.Tensor:
    return torch.randn(64, D_IN, generator=torch.Generator().manual_seed(seed)) * 3


def trained_like(tmp_path, cls, options):
    """An SAE directory with unequal decoder norms, biases and thresholds that matter."""
    torch.manual_seed(0)
    sae = cls(D_IN, N_DICT, **options)
    with torch.no_grad():
        sae.W_dec.mul_(torch.linspace(0.2, 5.0, N_DICT))
        sae.b_enc.normal_()
        sae.b_dec.normal_()
        if cls is JumpReLUSAE:
            sae.log_threshold.copy_(torch.linspace(-1.0, 1.0, N_DICT))
        else:
            sae.threshold.fill_(1.3)
    return save_sae(sae, HookPoint(1), tmp_path / "kit", EXTRA)


def invoke(*args: str):
    return runner.invoke(app, list(args))


def assert_same(codes, output, ref_codes, ref_output):
    assert torch.equal(codes != 0, ref_codes != 0)  # the same latents fire
    torch.testing.assert_close(codes, ref_codes, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(output, ref_output, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize(("cls", "options"), ARCHS)
def test_export_is_jumprelu_with_a_threshold_per_latent(tmp_path, cls, options):
    kit = trained_like(tmp_path, cls, options)
    assert invoke("export", str(kit), str(tmp_path / "sl")).exit_code == 0
    cfg = json.loads((tmp_path / "sl" / "cfg.json").read_text())
    assert cfg["architecture"] == "jumprelu" and cfg["activation_fn_str"] == "relu"
    w = load_file(str(tmp_path / "sl" / "sae_weights.safetensors"))
    sae, _ = load_sae_dir(kit)
    assert w["threshold"].shape == (N_DICT,)
    torch.testing.assert_close(w["threshold"], sae.threshold.expand(N_DICT))
    x = x_batch()
    pre = x @ w["W_enc"] + w["b_enc"]
    codes = torch.relu(pre) * (pre > w["threshold"])  # SAELens' JumpReLU, by hand
    assert 0 < (codes != 0).float().mean() < 0.6
    with torch.no_grad():
        out = sae(x)
    assert_same(out.codes, out.output, codes, codes @ w["W_dec"] + w["b_dec"])


@pytest.mark.filterwarnings(r"ignore:\s*This SAE has non-empty model_from_pretrained:UserWarning")
@pytest.mark.parametrize(("cls", "options"), ARCHS)
def test_round_trip_through_sae_lens(tmp_path, cls, options):
    """sae-kit -> export -> SAELens loads it -> SAELens saves it -> import -> sae-kit."""
    sae_lens = pytest.importorskip(
        "sae_lens", reason="sae-lens is not installed (optional: pip install sae-lens)")
    kit = trained_like(tmp_path, cls, options)
    assert invoke("export", str(kit), str(tmp_path / "sl")).exit_code == 0
    theirs = sae_lens.SAE.load_from_disk(str(tmp_path / "sl"), device="cpu")
    assert theirs.cfg.architecture() == "jumprelu"
    sae, config = load_sae_dir(kit)
    x = x_batch()
    with torch.no_grad():
        out = sae(x)
        assert_same(theirs.encode(x), theirs.decode(theirs.encode(x)), out.codes, out.output)
    theirs.save_model(str(tmp_path / "sl2"))
    result = invoke("import", str(tmp_path / "sl"), str(tmp_path / "back"))
    assert result.exit_code == 0, result.output
    back, back_config = load_sae_dir(tmp_path / "back")
    assert (back_config["architecture"], back_config["options"]) == (
        config["architecture"], config["options"])  # batchtopk/matryoshka come back as such
    with torch.no_grad():
        again = back(x)
    assert_same(again.codes, again.output, out.codes, out.output)
    # What SAELens itself saved (no sae-kit provenance) imports as JumpReLU, the same function.
    result = invoke("import", str(tmp_path / "sl2"), str(tmp_path / "theirs"))
    assert result.exit_code == 0, result.output
    plain, plain_config = load_sae_dir(tmp_path / "theirs")
    assert plain_config["architecture"] == "jumprelu"
    with torch.no_grad():
        assert_same(plain(x).codes, plain(x).output, out.codes, out.output)


def test_import_a_jumprelu_sae_saelens_made(tmp_path):
    """Decoder rows of any norm and b_dec applied to the input, as in Gemma Scope files."""
    sae_lens = pytest.importorskip(
        "sae_lens", reason="sae-lens is not installed (optional: pip install sae-lens)")
    from sae_lens.saes.jumprelu_sae import JumpReLUSAE as Theirs
    from sae_lens.saes.jumprelu_sae import JumpReLUSAEConfig
    from sae_lens.saes.sae import SAEMetadata

    torch.manual_seed(3)
    theirs = Theirs(JumpReLUSAEConfig(
        d_in=D_IN, d_sae=N_DICT, dtype="float32", device="cpu", apply_b_dec_to_input=True,
        metadata=SAEMetadata(hook_name="blocks.1.hook_resid_post")))
    with torch.no_grad():
        theirs.b_enc.normal_()
        theirs.b_dec.normal_()
        theirs.W_dec.mul_(torch.linspace(0.2, 5.0, N_DICT)[:, None])
        theirs.threshold.copy_(torch.linspace(0.1, 3.0, N_DICT))
    theirs.save_model(str(tmp_path / "sl"))
    assert sae_lens.SAE.load_from_disk(str(tmp_path / "sl")).cfg.architecture() == "jumprelu"
    result = invoke("import", str(tmp_path / "sl"), str(tmp_path / "kit"))
    assert result.exit_code == 0, result.output
    sae, config = load_sae_dir(tmp_path / "kit")
    assert config["architecture"] == "jumprelu"
    x = x_batch(4)
    with torch.no_grad():
        codes = theirs.encode(x)
        assert 0 < (codes != 0).float().mean() < 0.6
        out = sae(x)
    # sae-kit's codes are SAELens' times each decoder row's norm (its columns are unit norm)
    norms = theirs.W_dec.detach().norm(dim=1)
    assert torch.equal(out.codes != 0, codes != 0)
    torch.testing.assert_close(out.codes, codes * norms, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.output, theirs.decode(codes), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize(("change", "message"), [
    (lambda w: w.pop("threshold"), "threshold missing"),
    (lambda w: w["threshold"].__setitem__(3, 0.0), "has a JumpReLU threshold of 0; sae-kit's "
                                                   "jumprelu needs every threshold above 0"),
])
def test_bad_jumprelu_files_are_one_clear_line(tmp_path, change, message):
    kit = trained_like(tmp_path, JumpReLUSAE, {})
    assert invoke("export", str(kit), str(tmp_path / "sl")).exit_code == 0
    path = tmp_path / "sl" / "sae_weights.safetensors"
    w = load_file(str(path))
    change(w)
    save_file(w, str(path))
    result = invoke("import", str(tmp_path / "sl"), str(tmp_path / "back"))
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), lines
    assert message in " ".join(result.stderr.split())
    assert not (tmp_path / "back").exists()
