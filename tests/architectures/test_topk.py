"""The TopK architecture, alone and under every loss."""

import pytest
import torch

from sae_kit import plugins
from sae_kit.architectures.topk import TopKSAE
from sae_kit.errors import SaeKitError
from sae_kit.model.hookpoints import HookPoint
from sae_kit.model.loading import load_model
from sae_kit.model.splice import Splice
from sae_kit.store.sae_dir import load_sae_dir, save_sae
from tests.helpers import AUXK_OFF


def test_codes_are_the_k_largest_relu_preactivations():
    torch.manual_seed(0)
    sae = TopKSAE(8, 32, k=5)
    x = torch.randn(6, 8)
    pre = torch.relu(x @ sae.W_enc.T + sae.b_enc)
    codes = sae(x).codes
    assert ((codes != 0).sum(-1) <= 5).all()
    for row, c in zip(pre, codes, strict=True):
        kept = row.topk(5).indices
        expected = torch.zeros_like(row).index_copy(0, kept, row[kept])
        torch.testing.assert_close(c, expected, rtol=0, atol=0)


def test_fewer_positive_preactivations_than_k_keeps_only_those():
    sae = TopKSAE(2, 6, k=4)
    with torch.no_grad():
        sae.W_enc.copy_(torch.tensor([[1.0, 0], [-1, 0], [0, 1], [0, -1], [-1, -1], [-2, 0]]))
        sae.b_enc.zero_()
    codes = sae(torch.tensor([[1.0, 2.0]])).codes
    torch.testing.assert_close(codes, torch.tensor([[1.0, 0, 2, 0, 0, 0]]))


def test_no_sparsity_penalty_and_gradients_reach_only_kept_latents():
    torch.manual_seed(0)
    sae = TopKSAE(8, 32, k=3)
    out = sae(torch.randn(1, 8))
    assert sae.sparsity_penalty(out.codes).item() == 0
    out.output.pow(2).sum().backward()
    touched = sae.W_enc.grad.abs().sum(-1) > 0
    assert touched.sum() <= 3 and touched.equal(out.codes[0] != 0)


def test_k_is_saved_and_loaded_with_the_weights(tmp_path):
    torch.manual_seed(0)
    sae = TopKSAE(8, 32, k=7)
    save_sae(sae, HookPoint(1), tmp_path / "sae", {})
    loaded, config = load_sae_dir(tmp_path / "sae")
    assert config["options"] == {**AUXK_OFF, "bias_init": "zeros", "k": 7}
    assert isinstance(loaded, TopKSAE) and loaded.opts.k == 7
    x = torch.randn(4, 8)
    torch.testing.assert_close(loaded(x).output, sae(x).output, rtol=0, atol=0)


@pytest.mark.parametrize("k", [0, 33])
def test_k_out_of_range_is_one_clear_line(k):
    with pytest.raises(SaeKitError, match=f"k={k} must be between 1 and the dictionary size 32"):
        TopKSAE(8, 32, k=k)


@pytest.mark.parametrize("loss_name", ["local", "e2e", "e2e+ds"])
def test_every_loss_trains_a_topk_sae(tiny_gpt2, loss_name):
    loaded = load_model(str(tiny_gpt2))
    torch.manual_seed(0)
    sae = TopKSAE(32, 64, k=4)
    splice = Splice(loaded.model, loaded.adapter, {HookPoint(1): sae})
    loss = plugins.load("losses", loss_name)(sparsity_coeff=5.0)
    result = loss(splice, torch.randint(0, 512, (2, 12)))
    result.loss.backward()
    assert torch.isfinite(result.loss) and sae.W_enc.grad.abs().sum() > 0
    assert result.terms[f"sparsity/{HookPoint(1)}"] == 0  # lambda has nothing to weigh
    assert ((result.codes[HookPoint(1)] != 0).sum(-1) <= 4).all()
