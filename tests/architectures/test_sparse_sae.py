"""Sparse kernels of gated SAEs: same values and gradients as the dense computation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from sae_kit.architectures import SAE, sparse
from sae_kit.architectures.batchtopk import BatchTopKSAE
from sae_kit.architectures.relu import ReluSAE
from sae_kit.architectures.topk import TopKSAE

D_IN, N_DICT = 16, 256


class ThresholdSAE(SAE):
    """A third-party gate: codes are pre-activations of at least 0.8, others zero."""

    name = "threshold"

    def select(self, pre: torch.Tensor) -> torch.Tensor:
        return pre.masked_fill_(pre < 0.8, 0.0)


@pytest.fixture
def kernels(monkeypatch):
    """Set the CPU density limit: 1.0 always takes the sparse kernels, 0.0 never does."""
    def use(max_density: float) -> None:
        monkeypatch.setitem(sparse.MAX_DENSITY, "cpu", max_density)
    return use


def make(cls: type[SAE], **options) -> SAE:
    torch.manual_seed(0)
    sae = cls(D_IN, N_DICT, **options)
    with torch.no_grad():
        sae.W_dec.mul_(torch.rand(N_DICT) + 0.5)  # columns of unequal norm: normalisation matters
        sae.b_dec.normal_()
        if cls is ReluSAE:
            sae.b_enc.sub_(1.2)  # sparse codes, as after training
    return sae


def train_step(sae: SAE, x: torch.Tensor, upstream: torch.Tensor, coeff: float = 0.7):
    out = sae(x)
    loss = (out.output * upstream).sum() + coeff * sae.sparsity_penalty(out.codes)
    loss.backward()
    return out


def assert_grad_close(actual: torch.Tensor, expected: torch.Tensor, name: str = "") -> None:
    """Close up to float32 summation order, relative to the gradient's scale."""
    scale = expected.abs().max().item()
    torch.testing.assert_close(actual, expected, rtol=1e-5, atol=1e-6 * max(scale, 1.0), msg=name)


def inputs(shape=(3, 20), seed=1) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, D_IN, generator=gen), torch.randn(*shape, D_IN, generator=gen)


@pytest.mark.parametrize("cls,options", [(ReluSAE, {}), (TopKSAE, {"k": 5}), (ThresholdSAE, {})])
def test_sparse_kernels_give_the_dense_values_and_gradients(cls, options, kernels):
    dense, sparse_sae = make(cls, **options), make(cls, **options)
    x, upstream = inputs()
    x_dense, x_sparse = x.clone().requires_grad_(), x.clone().requires_grad_()
    kernels(0.0)
    out_dense = train_step(dense, x_dense, upstream)
    kernels(1.0)
    out_sparse = train_step(sparse_sae, x_sparse, upstream)

    density = (out_dense.codes != 0).float().mean().item()
    assert 0.0 < density < 0.25  # the test exercises sparse codes, not empty or dense ones
    torch.testing.assert_close(out_sparse.output, out_dense.output, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out_sparse.codes, out_dense.codes)
    for (name, p_dense), p_sparse in zip(dense.named_parameters(), sparse_sae.parameters(),
                                         strict=True):
        assert p_sparse.grad is not None, name
        assert_grad_close(p_sparse.grad, p_dense.grad, name)
    assert_grad_close(x_sparse.grad, x_dense.grad)


@pytest.mark.parametrize("max_density", [0.0, 1.0], ids=["dense", "sparse"])
def test_relu_sae_matches_an_independent_dense_formula(kernels, max_density):
    kernels(max_density)
    sae = make(ReluSAE)
    ref = {k: v.detach().clone().requires_grad_() for k, v in sae.named_parameters()}
    x, upstream = inputs()
    out = train_step(sae, x, upstream, coeff=0.7)

    codes = torch.relu(x @ ref["W_enc"].T + ref["b_enc"])
    recon = codes @ F.normalize(ref["W_dec"], dim=0).T + ref["b_dec"]
    ((recon * upstream).sum() + 0.7 * codes.abs().sum(-1).mean() / D_IN).backward()
    torch.testing.assert_close(out.output, recon, rtol=1e-5, atol=1e-6)
    for name, param in sae.named_parameters():
        assert_grad_close(param.grad, ref[name].grad, name)


def test_the_sparse_path_runs_only_below_the_density_limit(kernels):
    sae = make(ReluSAE)
    x, _ = inputs()
    density = (sae(x).codes != 0).float().mean().item()
    kernels(density * 1.01)
    assert sae._encode_gated(x).active is not None
    kernels(density * 0.99)
    assert sae._encode_gated(x).active is None
    kernels(1.0)
    with torch.no_grad():
        sae.b_enc.add_(5.0)  # nearly every code on
    assert (sae(x).codes != 0).float().mean() > 0.9
    assert sae._encode_gated(x).active is not None  # limit 1.0: still sparse kernels, still right


def test_tokens_without_active_codes_and_all_zero_codes(kernels):
    kernels(1.0)
    sae = make(ReluSAE)
    x, upstream = inputs()
    with torch.no_grad():
        x[0, :5] = 0.0  # pre-activations = b_enc < 0: no code on for these tokens
    out = train_step(sae, x, upstream)
    assert (out.codes[0, :5] == 0).all()
    torch.testing.assert_close(out.output[0, :5], sae.b_dec.detach().expand(5, D_IN))

    with torch.no_grad():
        sae.b_enc.fill_(-1e3)  # no code on anywhere
    sae.zero_grad()
    out = train_step(sae, x, upstream)
    assert sae._encode_gated(x).active is not None
    assert (out.codes == 0).all()
    torch.testing.assert_close(out.output, sae.b_dec.detach().expand_as(x))
    assert sae.W_enc.grad is None or (sae.W_enc.grad == 0).all()


def test_gradients_accumulate_over_micro_batches_as_in_dense_mode(kernels):
    dense, sparse_sae = make(ReluSAE), make(ReluSAE)
    batches = [inputs(seed=s) for s in (1, 2)]
    for max_density, sae in ((0.0, dense), (1.0, sparse_sae)):
        kernels(max_density)
        for x, upstream in batches:
            train_step(sae, x, upstream)
    for p_dense, p_sparse in zip(dense.parameters(), sparse_sae.parameters(), strict=True):
        assert_grad_close(p_sparse.grad, p_dense.grad)


def test_eval_without_gradients_takes_the_sparse_path_and_matches(kernels):
    sae = make(TopKSAE, k=4)
    x, _ = inputs()
    kernels(0.0)
    with torch.no_grad():
        dense = sae(x)
    kernels(1.0)
    with torch.no_grad():
        sparse_out = sae(x)
        assert sae._encode_gated(x).active is not None
    torch.testing.assert_close(sparse_out.output, dense.output, rtol=1e-5, atol=1e-6)
    assert ((sparse_out.codes != 0).sum(-1) <= 4).all()


def test_encode_of_a_gated_sae_equals_its_forward_codes(kernels):
    kernels(1.0)
    sae = make(ReluSAE)
    x, _ = inputs()
    torch.testing.assert_close(sae.encode(x), sae(x).codes)
    assert sae.encode(x).shape == (*x.shape[:-1], N_DICT)


def test_an_sae_with_neither_encode_nor_select_says_so():
    class Empty(SAE):
        name = "empty"

    with pytest.raises(NotImplementedError, match="neither encode nor select"):
        Empty(D_IN, N_DICT)(torch.zeros(2, D_IN))


def test_cuda_and_compiled_runs_default_to_dense(monkeypatch):
    assert sparse.sparse_max_density(torch.device("cpu")) > 0
    assert sparse.sparse_max_density(torch.device("cuda")) == 0.0  # not measured there yet
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    assert sparse.sparse_max_density(torch.device("cpu")) == 0.0


def test_penalty_is_unchanged_by_the_vector_norm_form():
    codes = torch.tensor([[0.0, -2.0, 1.0], [3.0, 0.0, 0.0]], requires_grad=True)
    sae = ReluSAE(4, 3)
    penalty = sae.sparsity_penalty(codes)
    assert penalty.item() == pytest.approx((3.0 + 3.0) / 2 / 4)
    penalty.backward()
    torch.testing.assert_close(codes.grad, torch.tensor([[0.0, -1.0, 1.0], [1.0, 0.0, 0.0]]) / 8)


@pytest.mark.integration
@pytest.mark.parametrize("loss,arch", [("local", "relu"), ("e2e", "topk"), ("e2e+ds", "relu")])
def test_training_through_the_cli_ends_at_the_same_weights(tiny_gpt2, tmp_path, kernels, loss,
                                                            arch):
    """Two SAEs (the second one's input depends on the first's output in e2e), gradient
    accumulation, clipping and Adam: sparse kernels on every step, then never."""
    from safetensors.torch import load_file
    from typer.testing import CliRunner

    from sae_kit.cli import app

    weights = {}
    for max_density in (1.0, 0.0):
        kernels(max_density)
        out = tmp_path / f"run-{max_density}"
        result = CliRunner().invoke(app, [
            "train", "--model", str(tiny_gpt2), "--dataset", "pydoc", "--out", str(out),
            "--loss", loss,
            "--architecture", arch, *(["--arch-option", "k=6"] if arch == "topk" else []),
            "--layer", "0", "--layer", "2", "--n-samples", "8", "--batch-size", "2",
            "--grad-accum", "2", "--context", "32", "--dict-ratio", "4", "--device", "cpu"])
        assert result.exit_code == 0, result.output
        weights[max_density] = {
            (hook.name, key): value for hook in sorted(out.glob("blocks.*"))
            for key, value in load_file(str(hook / "sae.safetensors")).items()}
    assert len(weights[1.0]) == 8
    for key, sparse_value in weights[1.0].items():
        torch.testing.assert_close(sparse_value, weights[0.0][key], rtol=1e-4, atol=1e-5,
                                   msg=str(key))


@pytest.mark.parametrize("cls,options", [(TopKSAE, {"k": 5}), (BatchTopKSAE, {"k": 5})])
def test_listed_positions_give_the_scan_s_active_codes_exactly(kernels, cls, options):
    """A TopK selection lists where its codes may be set; the kernels then skip the scan of
    every code. Same (rows, cols, values), same output and gradients, bit for bit — also when
    fewer than k pre-activations are positive, so some listed codes are zero."""
    kernels(1.0)
    listed, scanned = make(cls, **options), make(cls, **options)
    with torch.no_grad():
        for sae in (listed, scanned):
            sae.b_enc[: N_DICT - 3].fill_(-1e3)  # at most 3 codes on per token: fewer than k
    scanned.select = lambda pre: type(scanned).select(scanned, pre).codes  # bare codes
    x, upstream = inputs()
    flat = x.reshape(-1, D_IN)
    got, want = listed._encode_gated(flat), scanned._encode_gated(flat)
    assert isinstance(listed.select(flat @ listed.W_enc.T), sparse.KeptCodes)
    assert got.active is not None and want.active is not None
    for a, b in zip(got.active, want.active, strict=True):
        assert torch.equal(a, b)
    assert got.active[2].numel() < options["k"] * flat.shape[0]  # zeros were dropped
    out_l, out_s = train_step(listed, x, upstream), train_step(scanned, x, upstream)
    assert torch.equal(out_l.output, out_s.output)
    for name, p in listed.named_parameters():
        q = dict(scanned.named_parameters())[name]
        assert (p.grad is None and q.grad is None) or torch.equal(p.grad, q.grad), name


def test_listed_positions_too_dense_for_the_kernels_fall_back_to_dense(kernels):
    sae = make(TopKSAE, k=5)
    x, _ = inputs()
    kernels(4.0 / N_DICT)  # below k / n_dict: TopK's codes are too dense
    assert sae._encode_gated(x.reshape(-1, D_IN)).active is None
    kernels(0.0)  # off (CUDA, compiled)
    assert sae._encode_gated(x.reshape(-1, D_IN)).active is None


@pytest.mark.parametrize("grads", ["both", "rows", "norms"])
def test_dictionary_rows_give_autograd_s_gradient_bit_for_bit(grads):
    # Equal bits, not allclose: same-seed runs must keep byte-identical weights
    # (scripts/same_weights.sh). A zero column exercises the norm backward's mask.
    from sae_kit.architectures.decoder import dictionary_rows, inverse_column_norms

    torch.manual_seed(0)
    w0 = torch.randn(24, 300)
    w0[:, 7] = 0.0
    rows, cols = torch.arange(40).repeat_interleave(5), torch.randint(0, 300, (200,))
    values = torch.randn(200)
    got = []
    for ours in (False, True):
        w = w0.clone().requires_grad_()
        d, s = dictionary_rows(w) if ours else (w.T.contiguous(), inverse_column_norms(w))
        if grads == "rows":
            s = s.detach()
        if grads == "norms":
            d = d.detach()
        out = sparse.decode_active(rows, cols, values, 40, d, s)
        out.sin().sum().backward()
        got.append((out.detach(), w.grad))
    assert torch.equal(got[0][0], got[1][0])
    assert torch.equal(got[0][1], got[1][1])
    assert got[1][1].is_contiguous()
