"""Transcoders and skip transcoders through `sae-kit export/import --format saelens` and
SAELens' own loader: the same function both ways, the round trip exact, bad input one line."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from sae_kit.architectures.jumprelu import JumpReLUSAE
from sae_kit.architectures.relu import ReluSAE
from sae_kit.architectures.topk import TopKSAE
from sae_kit.cli import app
from sae_kit.model.hookpoints import HookPoint
from sae_kit.store.sae_dir import load_sae_dir, save_sae

pytestmark = pytest.mark.integration  # runs the sae-kit CLI

D, N = 16, 40
IN, OUT = HookPoint(2, "mlp_in"), HookPoint(2, "mlp_out")
EXTRA = {"model": "gpt2", "revision": None, "loss": "e2e", "sparsity_coeff": 1.0,
         "dataset": "Skylion007/openwebtext", "context": 64, "tokens_trained": 1000}
SAELENS = {("relu", False): "transcoder", ("relu", True): "skip_transcoder",
           ("jumprelu", False): "jumprelu_transcoder",
           ("jumprelu", True): "jumprelu_skip_transcoder"}


def _transcoder_dir(tmp_path, arch, skip: bool):
    torch.manual_seed(0)
    sae = arch(D, N)
    if skip:
        sae.add_skip()
    with torch.no_grad():
        sae.W_dec.mul_(torch.linspace(0.2, 5.0, N))  # unequal norms: export must fold them
        sae.b_enc.normal_()
        sae.b_dec.normal_()
        if skip:
            sae.W_skip.normal_(0, 0.2)
    return save_sae(sae, IN, tmp_path / IN.name, EXTRA, output=OUT)


def _x() -> torch.Tensor:
    return torch.randn(12, D, generator=torch.Generator().manual_seed(1)) * 3


def _export(src, out):
    result = CliRunner().invoke(app, ["export", str(src), str(out)])
    assert result.exit_code == 0, result.output


@pytest.mark.filterwarnings(r"ignore:\s*This SAE has non-empty model_from_pretrained:UserWarning")
@pytest.mark.parametrize("skip", [False, True], ids=["transcoder", "skip"])
@pytest.mark.parametrize("arch", [ReluSAE, JumpReLUSAE], ids=["relu", "jumprelu"])
def test_saelens_loads_the_export_and_the_round_trip_is_exact(tmp_path, arch, skip):
    sae_lens = pytest.importorskip(
        "sae_lens", reason="sae-lens is not installed (optional: pip install sae-lens)")
    src = _transcoder_dir(tmp_path, arch, skip)
    _export(src, tmp_path / "sl")
    cfg = json.loads((tmp_path / "sl" / "cfg.json").read_text())
    assert (cfg["architecture"], cfg["d_out"], cfg["hook_name"], cfg["hook_name_out"]) == \
        (SAELENS[arch.name, skip], D, "blocks.2.ln2.hook_normalized", OUT.name)
    loaded = sae_lens.SAE.load_from_disk(str(tmp_path / "sl"), device="cpu")
    assert loaded.cfg.architecture() == SAELENS[arch.name, skip]
    ours, _ = load_sae_dir(src)
    x = _x()
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), ours(x).output, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(loaded.encode(x), ours(x).codes, rtol=1e-5, atol=1e-5)
    result = CliRunner().invoke(app, ["import", str(tmp_path / "sl"), str(tmp_path / "back")])
    assert result.exit_code == 0, result.output
    back, config = load_sae_dir(tmp_path / "back")
    assert (config["hook_point"], config["output_hook_point"]) == (IN.name, OUT.name)
    assert config.get("skip", False) is skip and back.name == arch.name
    again = tmp_path / "again"
    _export(tmp_path / "back", again)  # sae-kit -> SAELens -> sae-kit -> SAELens
    first, second = (load_file(str(d / "sae_weights.safetensors"))
                     for d in (tmp_path / "sl", again))
    assert first.keys() == second.keys()
    for k in first:  # equal up to the float32 rounding of normalising the decoder once more
        torch.testing.assert_close(second[k], first[k], rtol=1e-6, atol=1e-6)
    if skip:  # the skip meets no normalisation: bit for bit
        assert torch.equal(second["W_skip"], first["W_skip"])
        assert torch.equal(back.W_skip, ours.W_skip)
    with torch.no_grad():
        torch.testing.assert_close(back(x).output, ours(x).output, rtol=1e-5, atol=1e-5)


def test_a_topk_transcoder_has_no_saelens_format(tmp_path):
    src = _transcoder_dir(tmp_path, lambda d, n: TopKSAE(d, n, k=4), False)
    result = CliRunner().invoke(app, ["export", str(src), str(tmp_path / "sl")])
    assert result.exit_code != 0 and "no 'topk' transcoder" in result.output
    assert not (tmp_path / "sl").exists()


def test_an_saelens_transcoder_of_two_widths_is_refused_in_one_line(tmp_path):
    src = _transcoder_dir(tmp_path, ReluSAE, False)
    _export(src, tmp_path / "sl")
    cfg_path = tmp_path / "sl" / "cfg.json"
    cfg_path.write_text(json.dumps({**json.loads(cfg_path.read_text()), "d_out": 2 * D}))
    result = CliRunner().invoke(app, ["import", str(tmp_path / "sl"), str(tmp_path / "back")])
    assert result.exit_code != 0 and "equal widths" in result.output
    assert len(result.output.strip().splitlines()) == 1 and not (tmp_path / "back").exists()
