"""BatchTopK, JumpReLU, Matryoshka and AuxK against hand-computed formulas."""

import re

import pytest
import torch
import torch.nn.functional as F

from sae_kit.architectures import sparse
from sae_kit.architectures.batchtopk import BatchTopKSAE
from sae_kit.architectures.jumprelu import JumpReLUSAE
from sae_kit.architectures.matryoshka import MatryoshkaSAE
from sae_kit.architectures.relu import ReluSAE
from sae_kit.architectures.topk import TopKSAE
from sae_kit.errors import SaeKitError
from sae_kit.losses.local import LocalLoss
from sae_kit.model.hookpoints import HookPoint
from sae_kit.store.sae_dir import load_sae_dir, save_sae

D_IN, N_DICT = 8, 64


def make(cls, **options):
    torch.manual_seed(0)
    sae = cls(D_IN, N_DICT, **options)
    with torch.no_grad():
        sae.W_dec.mul_(torch.rand(N_DICT) + 0.5)  # unequal column norms: normalisation matters
        sae.b_dec.normal_()
    return sae


def x_batch(tokens=12, seed=1):
    return torch.randn(tokens, D_IN, generator=torch.Generator().manual_seed(seed))


def test_batchtopk_keeps_exactly_k_times_b_codes_of_the_batch():
    sae = make(BatchTopKSAE, k=3)
    x = x_batch(10)
    pre = torch.relu(x @ sae.W_enc.T + sae.b_enc)
    codes = sae(x).codes
    kept = pre.reshape(-1).topk(30).indices
    expected = torch.zeros(pre.numel()).index_copy(0, kept, pre.reshape(-1)[kept])
    assert int((codes != 0).sum()) == 30
    assert torch.equal(codes.reshape(-1), expected)
    assert (codes != 0).sum(-1).tolist() != [3] * 10  # per token it varies; the batch mean is k


def test_batchtopk_threshold_is_a_running_mean_of_the_smallest_kept_code():
    sae = make(BatchTopKSAE, k=3, threshold_lr=0.25)
    mins = []
    for seed in (1, 2, 3):
        x = x_batch(10, seed)
        codes = sae(x).codes
        mins.append(codes[codes > 0].min().item())
    theta = mins[0]  # the first batch sets it, each later one moves it a quarter of the way
    for m in mins[1:]:
        theta += 0.25 * (m - theta)
    assert sae.threshold.item() == pytest.approx(theta, rel=1e-6)

    sae.eval()  # inference: pre-activation above theta, else zero; theta no longer moves
    x = x_batch(5, 9)
    pre = torch.relu(x @ sae.W_enc.T + sae.b_enc)
    torch.testing.assert_close(sae(x).codes, torch.where(pre > sae.threshold, pre, 0.0))
    assert sae.threshold.item() == pytest.approx(theta, rel=1e-6)
    batch = make(BatchTopKSAE, k=3, inference="batch").eval()
    assert int((batch(x).codes != 0).sum()) == 15


def test_batchtopk_threshold_is_saved_with_the_weights(tmp_path):
    sae = make(BatchTopKSAE, k=3)
    sae(x_batch())
    save_sae(sae, HookPoint(1), tmp_path / "sae", {})
    loaded, _ = load_sae_dir(tmp_path / "sae")
    assert not loaded.training and loaded.threshold.item() == sae.threshold.item() > 0
    sae.eval()
    assert torch.equal(loaded(x_batch(4, 5)).codes, sae(x_batch(4, 5)).codes)


def test_jumprelu_forward_and_straight_through_gradients_equal_the_formula():
    eps = 0.4
    sae = make(JumpReLUSAE, bandwidth=eps, init_threshold=0.3)
    with torch.no_grad():
        sae.log_threshold.add_(torch.linspace(-0.5, 0.5, N_DICT))
    x, upstream = x_batch(), torch.randn(12, D_IN, generator=torch.Generator().manual_seed(7))
    out = sae(x)
    lam = 0.7
    loss = (out.output * upstream).sum() + lam * out.penalty
    loss.backward()

    theta = sae.log_threshold.detach().exp()
    pre = x @ sae.W_enc.detach().T + sae.b_enc.detach()
    fired = pre > theta
    codes = torch.where(fired, pre, 0.0)
    dictionary = F.normalize(sae.W_dec.detach(), dim=0)
    torch.testing.assert_close(out.codes, codes)
    torch.testing.assert_close(out.output, codes @ dictionary.T + sae.b_dec.detach())
    assert out.penalty.item() == pytest.approx(fired.sum().item() / 12 / D_IN)
    # d loss / d c = upstream @ D; K((z - theta) / eps) = 1 inside the band |z - theta| < eps/2
    grad_codes = upstream @ dictionary
    band = ((pre - theta).abs() < eps / 2).float()
    d_theta = (grad_codes * -(theta / eps) * band).sum(0) + lam * (-(1 / eps) * band).sum(0) \
        / 12 / D_IN
    assert band.sum() > 0
    torch.testing.assert_close(sae.log_threshold.grad, d_theta * theta, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(sae.b_enc.grad, (grad_codes * fired).sum(0), rtol=1e-5, atol=1e-6)


def test_matryoshka_loss_is_the_sum_of_the_prefix_terms():
    sae = make(MatryoshkaSAE, k=4, prefixes="8,24")
    x = x_batch()
    out = sae(x)
    total, terms = LocalLoss(1.0).sae_terms(HookPoint(1), sae, out)
    loss = F.mse_loss(out.output, x) + total
    dictionary = F.normalize(sae.W_dec.detach(), dim=0)
    codes = out.codes.detach()
    expected = sum(F.mse_loss(codes[:, :m] @ dictionary[:, :m].T + sae.b_dec.detach(), x)
                   for m in (8, 24, N_DICT))
    assert sae.prefix_sizes == [8, 24, N_DICT]
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert f"matryoshka/{HookPoint(1)}" in terms


def test_auxk_equals_its_formula_and_touches_only_dead_latents():
    sae = make(TopKSAE, k=3, auxk=True, auxk_k=4, auxk_coeff=0.5, dead_tokens=12)
    x = x_batch(12)
    first = sae(x)  # 12 tokens counted: none dead yet
    assert first.aux["auxk"].item() == 0 and first.logs["dead_fraction"].item() == 0
    fired = (first.codes != 0).any(0)
    sae.zero_grad()
    out = sae(x)  # unfired latents went 12 tokens without firing: dead
    dead = ~fired
    assert out.logs["dead_fraction"].item() == pytest.approx(dead.float().mean().item())

    idx = dead.nonzero().squeeze(1)
    pre = x @ sae.W_enc.detach()[idx].T + sae.b_enc.detach()[idx]
    top = pre.topk(4, dim=-1)
    aux_codes = torch.zeros_like(pre).scatter(1, top.indices, top.values.relu())
    dictionary = F.normalize(sae.W_dec.detach(), dim=0)[:, idx]
    residual = x - out.output.detach()
    expected = 0.5 * F.mse_loss(aux_codes @ dictionary.T, residual)
    assert out.aux["auxk"].item() == pytest.approx(expected.item(), rel=1e-5)

    out.aux["auxk"].backward()
    assert sae.W_enc.grad[fired].abs().sum() == 0 and sae.W_enc.grad[dead].abs().sum() > 0
    assert sae.W_dec.grad[:, fired].abs().sum() == 0 and sae.b_dec.grad is None


def test_auxk_counter_is_saved_exactly(tmp_path):
    sae = make(BatchTopKSAE, k=3, auxk=True, dead_tokens=5)
    sae(x_batch())
    save_sae(sae, HookPoint(1), tmp_path / "sae", {})
    loaded, _ = load_sae_dir(tmp_path / "sae")
    assert loaded.tokens_since_fired.dtype == torch.int64
    assert torch.equal(loaded.tokens_since_fired, sae.tokens_since_fired)


CASES = [
    pytest.param(BatchTopKSAE, {"k": 4, "auxk": True, "dead_tokens": 1}, id="batchtopk"),
    pytest.param(JumpReLUSAE, {"bandwidth": 0.3, "init_threshold": 0.6}, id="jumprelu"),
    pytest.param(MatryoshkaSAE, {"k": 4, "prefixes": "8,32", "auxk": True, "dead_tokens": 1},
                 id="matryoshka"),
]


@pytest.mark.parametrize("cls,options", CASES)
def test_sparse_kernels_give_the_dense_values_and_gradients(cls, options, monkeypatch):
    x = torch.randn(3, 20, D_IN, generator=torch.Generator().manual_seed(1))
    upstream = torch.randn(3, 20, D_IN, generator=torch.Generator().manual_seed(2))
    results = []
    for density in (0.0, 1.0):
        monkeypatch.setitem(sparse.MAX_DENSITY, "cpu", density)
        sae = make(cls, **options)
        loss = LocalLoss(0.7)
        for _ in range(2):  # the second step has dead latents (AuxK) and a threshold
            sae.zero_grad()
            out = sae(x)
            total, _ = loss.sae_terms(HookPoint(1), sae, out)
            ((out.output * upstream).sum() + total).backward()
        results.append((sae, out))
    (dense, out_dense), (sparse_sae, out_sparse) = results
    assert 0 < (out_dense.codes != 0).float().mean() < 0.25
    torch.testing.assert_close(out_sparse.output, out_dense.output, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out_sparse.codes, out_dense.codes)
    for name, p in dense.named_parameters():
        q = dict(sparse_sae.named_parameters())[name]
        scale = max(p.grad.abs().max().item(), 1.0)
        torch.testing.assert_close(q.grad, p.grad, rtol=1e-4, atol=1e-5 * scale, msg=name)


@pytest.mark.parametrize("cls,options,message", [
    (BatchTopKSAE, {"k": 0}, "batchtopk option k=0 must be between 1 and the dictionary size 64"),
    (MatryoshkaSAE, {"k": 65}, "k=65 must be between 1 and the dictionary size 64"),
    (MatryoshkaSAE, {"prefixes": "16,8"}, "prefixes '16,8' do not nest"),
    (MatryoshkaSAE, {"prefixes": "8,128"}, "prefix size 128 exceeds the dictionary size 64"),
    (MatryoshkaSAE, {"prefixes": "a,b"}, "prefixes must be 'auto' or increasing whole numbers"),
    (JumpReLUSAE, {"bandwidth": 0}, "bandwidth must be above 0, got 0"),
    (JumpReLUSAE, {"init_threshold": -1}, "init_threshold must be above 0"),
    (TopKSAE, {"auxk_k": 0}, "auxk_k must be at least 1"),
    (ReluSAE, {"auxk": True}, "AuxK (auxk) needs TopK selection, which 'relu' has not: use the "
                              "topk, batchtopk or matryoshka architecture"),
    (JumpReLUSAE, {"auxk_k": 8}, "AuxK (auxk_k) needs TopK selection, which 'jumprelu' has not"),
    (BatchTopKSAE, {"inference": "x"}, "inference must be one of threshold, batch"),
])
def test_bad_options_are_one_clear_line(cls, options, message):
    with pytest.raises(SaeKitError, match=re.escape(message)):
        cls(D_IN, N_DICT, **options)


@pytest.mark.integration
@pytest.mark.parametrize("args,message", [
    (["--architecture", "batchtopk", "--lambda", "2"], "--lambda has no effect with the "
                                                       "'batchtopk'"),
    (["--architecture", "matryoshka", "--lambda", "2"], "--lambda has no effect with the "
                                                        "'matryoshka'"),
    (["--architecture", "relu", "--arch-option", "auxk=true"], "AuxK (auxk) needs TopK "
                                                               "selection, which 'relu' has not"),
    (["--architecture", "jumprelu", "--arch-option", "dead-tokens=64"],
     "AuxK (dead_tokens) needs TopK selection, which 'jumprelu' has not"),
    (["--architecture", "jumprelu", "--arch-option", "bandwidth=0"], "bandwidth must be above 0"),
    (["--architecture", "matryoshka", "--arch-option", "prefixes=64,32"], "do not nest"),
])
def test_bad_cli_input_is_one_error_line(tiny_gpt2, tmp_path, args, message):
    from tests.helpers import cli_train

    result = cli_train(tiny_gpt2, tmp_path / "run", *args)
    assert result.exit_code != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], lines
    assert not (tmp_path / "run").exists()
