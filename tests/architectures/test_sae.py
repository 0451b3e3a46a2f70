import pytest
import torch

from sae_kit.architectures.relu import ReluSAE
from sae_kit.architectures.topk import TopKSAE
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
    with pytest.raises(SaeKitError, match="unknown option 'k' for 'relu'; it takes: bias_init"):
        ReluSAE(4, 8, k=3)


@pytest.mark.parametrize("arch", [ReluSAE, TopKSAE])
def test_biases_start_at_zero_by_default(arch):
    sae = arch(4, 64)
    assert sae.opts.bias_init == "zeros"
    assert not sae.b_enc.any() and not sae.b_dec.any()


@pytest.mark.parametrize("arch", [ReluSAE, TopKSAE])
def test_uniform_bias_init_is_nn_linear_s_and_leaves_the_weights_alone(arch):
    torch.manual_seed(0)
    zeros = arch(4, 64)
    torch.manual_seed(0)
    uniform = arch(4, 64, bias_init="uniform")
    torch.testing.assert_close(uniform.W_enc, zeros.W_enc, rtol=0, atol=0)
    torch.testing.assert_close(uniform.W_dec, zeros.W_dec, rtol=0, atol=0)
    # nn.Linear's bias bound is 1/sqrt(fan_in): the encoder's fan-in is d_in = 4 -> 0.5, the
    # decoder's (nn.Linear(n_dict, d_in) in the reference) n_dict = 64 -> 0.125.
    assert uniform.b_enc.abs().max() <= 0.5 and uniform.b_enc.abs().max() > 0.25
    assert uniform.b_dec.abs().max() <= 0.125 and uniform.b_dec.abs().max() > 0.0
    # The same draws as nn.Linear's own init of a bias of that shape and fan-in.
    torch.manual_seed(0)
    arch(4, 64)
    expected_enc = torch.empty(64).uniform_(-0.5, 0.5)
    expected_dec = torch.empty(4).uniform_(-0.125, 0.125)
    torch.testing.assert_close(uniform.b_enc.detach(), expected_enc, rtol=0, atol=0)
    torch.testing.assert_close(uniform.b_dec.detach(), expected_dec, rtol=0, atol=0)


def test_bad_bias_init_is_one_clear_error():
    with pytest.raises(SaeKitError, match="bias_init must be one of zeros, uniform, got 'normal'"):
        ReluSAE(4, 8, bias_init="normal")


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
