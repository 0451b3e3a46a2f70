"""KL(p_original || p_spliced) straight from final hidden states, a chunk of tokens at a time.

The plain computation (:func:`sae_kit.losses.kl.kl_divergence` on two logits tensors) holds
several [tokens, vocab] tensors at once: both logits, both log-softmaxes, and what autograd saves
for the backward pass. Here each chunk of tokens is multiplied by the unembedding, reduced to its
per-token KL and dropped before the next chunk, so peak memory is set by chunk x vocab, not by
batch x vocab.

The gradient is computed in the same loop: for a mean over n tokens,
dKL/dlogits_q = (softmax(q) - softmax(p)) / n, and times the unembedding weight that is the
gradient of the spliced hidden states. Doing it while the chunk's softmaxes exist costs one
matmul per chunk; recomputing them in the backward pass would cost two more unembedding matmuls
per step. What is kept for backward is one [tokens, d_model] tensor. The unembedding is frozen:
it gets no gradient.

When several SAEs are trained in one pass (``sae_kit.train.group``) they share the clean hidden
states, so the clean side of every chunk (its logits, log-softmax and softmax) is the same for
all of them: given a ``clean_cache`` (the shared pass's ``RunResult.derived``), the first SAE
keeps each chunk's log p and p there and the others read them, within a memory budget. The
values are those computed alone, chunk for chunk.

On CPU a vocabulary that is not a multiple of 64 is padded with zero rows for the logits
product (sliced off before the softmax): MKL's product is a third faster at that width and the
logits are the same bit for bit (tests/losses/test_chunked_kl.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from sae_kit.losses.kl import kl_divergence

# Tokens per chunk. On a 2-core CPU with GPT-2's 50k vocabulary and 2048 tokens, the KL's forward
# and backward took 0.98x the unchunked KL's time at 512, 0.91x at 2048 and 1.24x at 128
# (benchmarks/bench_kl_chunks.py, docs/performance.md). 512 holds a chunk's four fp32
# [chunk, vocab] buffers at 0.4 GB for that vocabulary; its matmuls are large enough for a GPU.
DEFAULT_CHUNK = 512
# Largest clean distribution (log p and p of one micro-batch, fp32) kept for reuse by default:
# 67 MB for the built-in model's 2,048 tokens x 4,096 vocabulary; GPT-2's 50k vocabulary fits
# ~2,600 tokens in it.
DEFAULT_CACHE_MB = 1024
# The CPU's logits product is padded to a vocabulary of a multiple of PAD_VOCAB rows: at GPT-2's
# 50,257 x 768 and 512 tokens MKL took 0.87 s, padded to 50,304 0.62 s, with the same values bit
# for bit from 4 tokens on (not below: its small-matrix path depends on the width), so chunks of
# fewer than PAD_MIN_TOKENS tokens are not padded (docs/performance.md, the clean-pass cache).
PAD_VOCAB = 64
PAD_MIN_TOKENS = 64


Unembedding = tuple[torch.Tensor, torch.Tensor | None]


def _padded(w: torch.Tensor, b: torch.Tensor | None, n_tokens: int) -> Unembedding | None:
    """The fp32 unembedding with zero rows up to a multiple of PAD_VOCAB, where that is faster
    and gives the same logits: on CPU, for chunks of PAD_MIN_TOKENS tokens or more."""
    extra = -w.shape[0] % PAD_VOCAB
    if w.device.type != "cpu" or extra == 0 or n_tokens < PAD_MIN_TOKENS:
        return None
    wide = torch.cat([w, w.new_zeros(extra, w.shape[1])])
    return wide, None if b is None else torch.cat([b, b.new_zeros(extra)])


def _logits(hidden: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None,
            wide: Unembedding | None) -> torch.Tensor:
    if wide is None or hidden.shape[0] < PAD_MIN_TOKENS:
        return F.linear(hidden, w, b)
    return F.linear(hidden, *wide)[:, :w.shape[0]]


def _clean_side(p_hidden: torch.Tensor, rows: slice, w: torch.Tensor, b: torch.Tensor | None,
                wide: Unembedding | None,
                cache: dict[int, tuple[torch.Tensor, torch.Tensor]] | None
                ) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """(log p, p) of a chunk of clean hidden states; whether they belong to the cache."""
    if cache is not None and rows.start in cache:
        return (*cache[rows.start], True)
    log_p = torch.log_softmax(_logits(p_hidden[rows].float(), w, b, wide), dim=-1)
    p = log_p.exp()
    if cache is None:
        return log_p, p, False
    cache[rows.start] = (log_p, p)
    return log_p, p, True


class _ChunkedKL(torch.autograd.Function):
    @staticmethod
    def forward(ctx, clean: torch.Tensor, spliced: torch.Tensor, weight: torch.Tensor,
                bias: torch.Tensor | None, chunk_size: int, want_grad: bool,
                cache: dict | None) -> torch.Tensor:
        d_model = clean.shape[-1]
        p_hidden, q_hidden = clean.reshape(-1, d_model), spliced.reshape(-1, d_model)
        n = p_hidden.shape[0]
        # fp32 whatever the inputs: bf16 logits of magnitude ~100 are off by ~0.5, which would
        # swamp the small KL between two nearly equal distributions.
        w = weight.float()
        b = None if bias is None else bias.float()
        wide = _padded(w, b, min(n, chunk_size))
        per_token = torch.empty(n, dtype=torch.float32, device=clean.device)
        grad = torch.empty(n, d_model, dtype=torch.float32, device=clean.device) if want_grad \
            else None
        with torch.autocast(clean.device.type, enabled=False):
            for start in range(0, n, chunk_size):
                rows = slice(start, start + chunk_size)
                log_p, p, shared = _clean_side(p_hidden, rows, w, b, wide, cache)
                log_q = torch.log_softmax(_logits(q_hidden[rows].float(), w, b, wide), dim=-1)
                log_ratio = log_p - log_q if shared else log_p.sub_(log_q)  # same values
                per_token[rows] = log_ratio.mul_(p).sum(-1)
                del log_p, log_ratio
                if grad is not None:
                    grad[rows] = log_q.exp_().sub_(p) @ w  # (q - p) W, scaled in backward
                del log_q, p
        ctx.save_for_backward(grad)
        ctx.shape, ctx.dtype, ctx.n = spliced.shape, spliced.dtype, n
        return per_token.mean()

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_kl: torch.Tensor):
        (grad,) = ctx.saved_tensors
        grad_spliced = None
        if ctx.needs_input_grad[1]:
            grad_spliced = (grad * (grad_kl / ctx.n)).to(ctx.dtype).reshape(ctx.shape)
        return None, grad_spliced, None, None, None, None, None


def chunked_kl(
    clean_hidden: torch.Tensor,
    spliced_hidden: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    chunk_size: int = DEFAULT_CHUNK,
    clean_cache: dict | None = None,
    cache_mb: float = DEFAULT_CACHE_MB,
) -> torch.Tensor:
    """Mean over tokens of KL(softmax(clean W^T + b) || softmax(spliced W^T + b)), in fp32.

    clean_hidden: the original model's final normed hidden states (no gradient needed).
    spliced_hidden: the same with SAEs spliced in; the only input that gets a gradient.
    weight, bias: the unembedding, shape (vocab, d_model) and (vocab,).
    clean_cache: a dict that lives as long as ``clean_hidden`` (a shared pass's
        ``RunResult.derived``): the clean side of each chunk is kept there for the next call on
        the same hidden states, unless it takes more than ``cache_mb`` megabytes.
    Equals ``kl_divergence(F.linear(clean, W, b), F.linear(spliced, W, b))``.
    """
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be at least 1, got {chunk_size}")
    if weight.requires_grad or (bias is not None and bias.requires_grad):
        raise ValueError("chunked_kl gives no gradient to the unembedding; freeze the model")
    want_grad = torch.is_grad_enabled() and spliced_hidden.requires_grad
    cache = _chunk_cache(clean_cache, clean_hidden, weight, bias, chunk_size, cache_mb)
    return _ChunkedKL.apply(clean_hidden.detach(), spliced_hidden, weight, bias, chunk_size,
                            want_grad, cache)


def _chunk_cache(clean_cache: dict | None, clean_hidden: torch.Tensor, weight: torch.Tensor,
                 bias: torch.Tensor | None, chunk_size: int, cache_mb: float) -> dict | None:
    """This computation's entry in ``clean_cache``, or None where it would exceed the budget."""
    if clean_cache is None:
        return None
    n_tokens = clean_hidden.numel() // clean_hidden.shape[-1]
    if 2 * n_tokens * weight.shape[0] * 4 > cache_mb * 2**20:  # log p and p, fp32
        return None
    key = ("chunked_kl", chunk_size, weight.data_ptr(),
           None if bias is None else bias.data_ptr(), clean_hidden.data_ptr())
    return clean_cache.setdefault(key, {})


def unembed_kl(
    unembed: nn.Module,
    clean_hidden: torch.Tensor,
    spliced_hidden: torch.Tensor,
    chunk_size: int = DEFAULT_CHUNK,
    clean_cache: dict | None = None,
    cache_mb: float = DEFAULT_CACHE_MB,
) -> torch.Tensor:
    """KL on the model's output distributions, given the unembedding's inputs.

    Chunked when the unembedding is a plain ``nn.Linear`` (``lm_head`` of most families); any
    other module (a scaled or soft-capped head, say) gets full logits and the plain KL.
    """
    if isinstance(unembed, nn.Linear) and type(unembed).forward is nn.Linear.forward:
        return chunked_kl(clean_hidden, spliced_hidden, unembed.weight, unembed.bias, chunk_size,
                          clean_cache, cache_mb)
    return kl_divergence(unembed(clean_hidden), unembed(spliced_hidden))
