"""The chunked unembedding + KL against the plain full-logits computation."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.profiler import ProfilerActivity, profile

from sae_kit import plugins
from sae_kit.architectures.relu import ReluSAE
from sae_kit.errors import SaeKitError
from sae_kit.losses import chunked_kl as chunked_kl_module
from sae_kit.losses.chunked_kl import chunked_kl, unembed_kl
from sae_kit.losses.kl import kl_divergence
from sae_kit.model.hookpoints import HookPoint
from sae_kit.model.loading import load_model
from sae_kit.model.splice import Splice

D, VOCAB = 16, 50


def _inputs(shape, dtype=torch.float32, bias=True, seed=0):
    gen = torch.Generator().manual_seed(seed)
    weight = torch.randn(VOCAB, D, generator=gen).to(dtype)
    b = torch.randn(VOCAB, generator=gen).to(dtype) if bias else None
    clean = torch.randn(*shape, D, generator=gen).to(dtype)
    spliced = (clean.float() + 0.3 * torch.randn(*shape, D, generator=gen)).to(dtype)
    return clean, spliced.requires_grad_(), weight, b


def _plain(clean, spliced, weight, bias):
    """kl_divergence on full logits, in fp32 from the same (possibly bf16) values."""
    b = None if bias is None else bias.float()
    return kl_divergence(F.linear(clean.float(), weight.float(), b),
                         F.linear(spliced.float(), weight.float(), b))


def _grad(fn, spliced, scale=1.0):
    spliced.grad = None
    value = fn()
    (scale * value).backward()
    return value.detach(), spliced.grad.clone()


@pytest.mark.parametrize("chunk", [1, 7, 30, 31, 1000])
@pytest.mark.parametrize("bias", [True, False])
def test_value_and_gradient_equal_the_plain_kl(chunk, bias):
    clean, spliced, weight, b = _inputs((3, 10), bias=bias)  # 30 tokens: 7 leaves a remainder
    want, want_grad = _grad(lambda: _plain(clean, spliced, weight, b), spliced)
    got, got_grad = _grad(lambda: chunked_kl(clean, spliced, weight, b, chunk), spliced)
    assert want > 0
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)
    _assert_grads_close(got_grad, want_grad, rtol=1e-4)


def _assert_grads_close(got, want, rtol):
    """Equal up to rounding; (q - p) cancels, so tiny entries get absolute, not relative, error."""
    scale = want.float().abs().max().item()
    assert scale > 0
    torch.testing.assert_close(got.float(), want.float(), rtol=rtol, atol=rtol * scale)


@pytest.mark.parametrize("vocab", [1001, 4097])
def test_the_padded_cpu_unembedding_gives_the_kl_of_the_plain_one_bit_for_bit(vocab, monkeypatch):
    gen = torch.Generator().manual_seed(1)
    weight, bias = torch.randn(vocab, 64, generator=gen), torch.randn(vocab, generator=gen)
    clean = torch.randn(300, 64, generator=gen)
    spliced = (clean + 0.3 * torch.randn(300, 64, generator=gen)).requires_grad_()
    assert chunked_kl_module._padded(weight, bias, 128) is not None  # padding is taken here
    # chunks of 128, 128 and 44 tokens: two padded, the last (under PAD_MIN_TOKENS) not
    got, got_grad = _grad(lambda: chunked_kl(clean, spliced, weight, bias, 128), spliced)
    monkeypatch.setattr(chunked_kl_module, "PAD_VOCAB", 1)  # no padding
    assert chunked_kl_module._padded(weight, bias, 128) is None
    want, want_grad = _grad(lambda: chunked_kl(clean, spliced, weight, bias, 128), spliced)
    assert torch.equal(got, want) and torch.equal(got_grad, want_grad)


def test_upstream_gradient_scales_the_result():
    clean, spliced, weight, b = _inputs((12,))
    _, once = _grad(lambda: chunked_kl(clean, spliced, weight, b, 5), spliced)
    _, scaled = _grad(lambda: chunked_kl(clean, spliced, weight, b, 5), spliced, scale=2.5)
    torch.testing.assert_close(scaled, 2.5 * once)


def test_bf16_inputs_are_computed_in_fp32():
    clean, spliced, weight, b = _inputs((4, 6), dtype=torch.bfloat16)
    want, want_grad = _grad(lambda: _plain(clean, spliced, weight, b), spliced)
    got, got_grad = _grad(lambda: chunked_kl(clean, spliced, weight, b, 5), spliced)
    assert got.dtype == torch.float32 and got_grad.dtype == torch.bfloat16
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-7)
    _assert_grads_close(got_grad, want_grad, rtol=2**-7)  # within a bf16 rounding step


def test_no_gradient_work_without_grad_mode():
    clean, spliced, weight, b = _inputs((8,))
    with torch.no_grad():
        value = chunked_kl(clean, spliced, weight, b, 3)
    torch.testing.assert_close(value, _plain(clean, spliced, weight, b).detach())


def test_a_trainable_unembedding_is_refused():
    clean, spliced, weight, b = _inputs((4,))
    with pytest.raises(ValueError, match="no gradient to the unembedding"):
        chunked_kl(clean, spliced, weight.requires_grad_(), b)


def _largest_allocation(fn) -> int:
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    return max(event.self_cpu_memory_usage for event in prof.events())


def test_memory_is_bounded_by_the_chunk_not_the_batch():
    vocab, chunk = 2000, 4
    weight = torch.randn(vocab, D)
    for tokens in (64, 256):
        clean = torch.randn(tokens, D)
        spliced = torch.randn(tokens, D, requires_grad=True)
        chunked = _largest_allocation(
            lambda c=clean, s=spliced: chunked_kl(c, s, weight, None, chunk).backward())
        plain = _largest_allocation(
            lambda c=clean, s=spliced: _plain(c, s, weight, None).backward())
        assert chunked <= chunk * vocab * 4 < tokens * vocab * 4 <= plain


class _ScaledHead(nn.Module):
    """An unembedding that is not a plain Linear: logits are scaled after the matmul."""

    def __init__(self, weight):
        super().__init__()
        self.linear = nn.Linear(D, VOCAB, bias=False)
        self.linear.weight.data.copy_(weight)
        self.requires_grad_(False)

    def forward(self, x):
        return 0.5 * self.linear(x)


def test_other_unembeddings_fall_back_to_full_logits():
    clean, spliced, weight, _ = _inputs((6,), bias=False)
    head = _ScaledHead(weight)
    got = unembed_kl(head, clean, spliced, chunk_size=2)
    want = kl_divergence(0.5 * F.linear(clean, weight), 0.5 * F.linear(spliced, weight))
    torch.testing.assert_close(got, want)


@pytest.mark.parametrize("loss_name", ["e2e", "e2e+ds"])
def test_losses_give_the_same_sae_gradients_for_any_chunk(tiny_gpt2, loss_name):
    loaded = load_model(str(tiny_gpt2))
    torch.manual_seed(0)
    sae = ReluSAE(32, 64)
    splice = Splice(loaded.model, loaded.adapter, {HookPoint(1): sae})
    ids = torch.randint(0, 512, (2, 12))
    grads = []
    for chunk in (5, 24):
        sae.zero_grad(set_to_none=True)
        loss = plugins.load("losses", loss_name)(sparsity_coeff=0.3, kl_chunk=str(chunk))
        loss(splice, ids).loss.backward()
        grads.append([p.grad.clone() for p in sae.parameters()])
    for first, second in zip(*grads, strict=True):
        torch.testing.assert_close(first, second)


def test_kl_chunk_must_be_positive():
    with pytest.raises(SaeKitError, match="kl_chunk must be at least 1"):
        plugins.load("losses", "e2e")(sparsity_coeff=1.0, kl_chunk="0")


@pytest.mark.parametrize("chunk", [7, 30])
def test_a_shared_clean_cache_gives_the_uncached_values_bit_for_bit(chunk):
    clean, spliced, weight, b = _inputs((3, 10))
    other = (spliced.detach() + 0.1).requires_grad_()  # a second SAE's spliced states
    cache: dict = {}
    for hidden in (spliced, other, spliced):  # fills the cache, then reads it twice
        want, want_grad = _grad(lambda h=hidden: chunked_kl(clean, h, weight, b, chunk), hidden)
        got, got_grad = _grad(lambda h=hidden: chunked_kl(clean, h, weight, b, chunk,
                                                          clean_cache=cache), hidden)
        assert torch.equal(got, want) and torch.equal(got_grad, want_grad)
    (entry,) = cache.values()
    assert sorted(entry) == list(range(0, 30, chunk))  # one (log p, p) per chunk, kept once


def test_the_cache_is_read_not_recomputed():
    clean, spliced, weight, b = _inputs((2, 5))
    cache: dict = {}
    first = chunked_kl(clean, spliced, weight, b, 4, clean_cache=cache)
    (entry,) = cache.values()
    for log_p, p in entry.values():  # as if the clean model predicted something else
        log_p.zero_().sub_(torch.log(torch.tensor(float(VOCAB))))
        p.fill_(1.0 / VOCAB)
    uniform = chunked_kl(clean, spliced, weight, b, 4, clean_cache=cache)
    assert not torch.isclose(uniform, first)
    # KL(uniform || q) = -log V - mean over the vocabulary of log q
    log_q = torch.log_softmax(F.linear(spliced.detach(), weight, b), -1)
    torch.testing.assert_close(uniform, (-log_q.mean(-1) - torch.log(torch.tensor(50.0))).mean())


def test_the_cache_keeps_nothing_over_its_budget():
    clean, spliced, weight, b = _inputs((4, 64))  # 256 tokens x 50 x 2 x 4 bytes = 100 kB
    cache: dict = {}
    chunked_kl(clean, spliced, weight, b, 32, clean_cache=cache, cache_mb=0.05)
    assert cache == {}
    chunked_kl(clean, spliced, weight, b, 32, clean_cache=cache, cache_mb=0.2)
    assert len(next(iter(cache.values()))) == 256 // 32


def test_a_group_computes_the_clean_distribution_once_per_batch(tmp_path):
    from sae_kit.record.config import TrainConfig
    from sae_kit.train.group import build_group
    from sae_kit.train.loop import train_step
    from sae_kit.train.stats import StepStats

    configs = [TrainConfig(loss="e2e", sparsity_coeff=lam, context=16, batch_size=2,
                           n_samples=4, dict_ratio=1, output_dir=str(tmp_path / str(lam)))
               for lam in (1.0, 2.0, 4.0)]
    runs = build_group(configs)
    calls = []
    real = torch.log_softmax
    try:
        torch.log_softmax = lambda *a, **k: calls.append(1) or real(*a, **k)
        train_step(runs, [StepStats() for _ in runs])
    finally:
        torch.log_softmax = real
    assert len(calls) == 1 + len(runs)  # the clean side once, each SAE's spliced side once
    assert runs[0].splice.shared._result is None  # cleared after the step: the cache is freed


def test_nothing_of_a_groups_clean_pass_is_held_through_the_optimizer_step(tmp_path):
    import weakref

    from sae_kit.record.config import TrainConfig
    from sae_kit.train.group import build_group
    from sae_kit.train.loop import train_step
    from sae_kit.train.stats import StepStats

    configs = [TrainConfig(loss="e2e", sparsity_coeff=lam, context=16, batch_size=2,
                           grad_accum=2, n_samples=8, dict_ratio=1,
                           output_dir=str(tmp_path / str(lam))) for lam in (1.0, 2.0)]
    runs = build_group(configs)
    shared = runs[0].splice.shared
    passes: list = []  # a weak reference to each micro-batch's clean pass and its KL cache
    real_get = shared.get

    def get(*args):
        result = real_get(*args)
        passes.append(weakref.ref(result))
        return result

    shared.get = get
    held_at_step: list = []
    for run in runs:
        step = run.optimizer.step
        run.optimizer.step = lambda *a, step=step: held_at_step.append(
            [p for p in passes if p() is not None]) or step(*a)
    train_step(runs, [StepStats() for _ in runs])
    assert len(passes) >= 2 * len(runs)  # each member asked on each micro-batch
    assert held_at_step == [[], []]  # each member's optimizer step sees no clean pass alive
