import pytest
import torch

from sae_kit.architectures.relu import ReluSAE
from sae_kit.errors import SaeKitError


def test_decoder_columns_are_renormalised_in_every_forward():
    torch.manual_seed(0)
    sae = ReluSAE(8, 32)
    x = torch.randn(5, 8)
    before = sae(x).output
    with torch.no_grad():
        sae.W_dec.mul_(torch.linspace(0.1, 7.0, 32))  # rescale each column differently
    after = sae(x).output
    torch.testing.assert_close(after, before)
    torch.testing.assert_close(sae.dict_elements.norm(dim=0), torch.ones(32))


def test_gradient_flows_through_the_normalisation():
    torch.manual_seed(0)
    sae = ReluSAE(4, 6)
    x = torch.randn(3, 4)
    sae(x).output.pow(2).sum().backward()
    # d(output)/d(W_dec) goes through W / ||W||: it is orthogonal to each column.
    col_dot = (sae.W_dec.grad * sae.W_dec).sum(0)
    torch.testing.assert_close(col_dot, torch.zeros(6), atol=1e-5, rtol=0)
    assert sae.W_dec.grad.abs().sum() > 0


def test_decoder_initialised_orthogonally():
    torch.manual_seed(0)
    sae = ReluSAE(16, 64)
    gram = sae.W_dec @ sae.W_dec.T  # rows orthonormal when d_in < n_dict
    torch.testing.assert_close(gram, torch.eye(16), atol=1e-5, rtol=0)


def test_forward_matches_the_formula():
    torch.manual_seed(0)
    sae = ReluSAE(3, 5)
    x = torch.randn(2, 3)
    codes = torch.relu(x @ sae.W_enc.T + sae.b_enc)
    dec = sae.W_dec / sae.W_dec.norm(dim=0, keepdim=True)
    out = sae(x)
    torch.testing.assert_close(out.codes, codes)
    torch.testing.assert_close(out.output, codes @ dec.T + sae.b_dec)


def test_sparsity_penalty_is_mean_l1_over_d_in():
    sae = ReluSAE(4, 10)
    codes = torch.tensor([[1.0, 0.0, 2.0] + [0.0] * 7, [0.0] * 9 + [3.0]])
    # token L1s: 3 and 3 -> mean 3 -> / d_in (4), not / n_dict (10)
    assert sae.sparsity_penalty(codes).item() == pytest.approx(0.75)


def test_unknown_option_is_rejected():
    with pytest.raises(SaeKitError, match="unknown option 'k' for 'relu'; it takes: none"):
        ReluSAE(4, 8, k=3)


def test_fused_normalised_decode_equals_f_normalize_with_autograd():
    import torch.nn.functional as F

    from sae_kit.architectures.decoder import normalised_decode

    gen = torch.Generator().manual_seed(0)
    codes = torch.relu(torch.randn(2, 7, 40, generator=gen)).requires_grad_()
    weight = (torch.randn(12, 40, generator=gen) * torch.linspace(0.2, 5.0, 40)).requires_grad_()
    upstream = torch.randn(2, 7, 12, generator=gen)
    ref_codes, ref_weight = codes.detach().clone().requires_grad_(), weight.detach().clone()
    ref_weight.requires_grad_()

    out = normalised_decode(codes, weight)
    ref = ref_codes @ F.normalize(ref_weight, dim=0).T
    torch.testing.assert_close(out, ref)
    (out * upstream).sum().backward()
    (ref * upstream).sum().backward()
    torch.testing.assert_close(codes.grad, ref_codes.grad)
    torch.testing.assert_close(weight.grad, ref_weight.grad)
