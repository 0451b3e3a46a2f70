"""The dense decoder with unit-norm columns, as one autograd function.

x-hat = codes @ normalize(W_dec).T: written with ``F.normalize`` and autograd, its backward
allocates and walks several [d_in, n_dict] temporaries (the division by an expanded norm and
its gradient, then the norm's gradient, then their sum). Here the backward reuses the weight
gradient's own buffer: with D = W / ||W|| column-wise and G = dL/dD = g^T codes,

    dL/dW = (G - D * sum_i(G * D)) / ||W||,

one matmul, one reduction and two in-place passes. Values and gradients are those of the plain
formula (tests/architectures/test_sae.py), except for a column whose norm is below 1e-12, where
``F.normalize`` stops differentiating the norm.
"""

from __future__ import annotations

import torch
from torch.autograd.function import once_differentiable

EPS = 1e-12  # F.normalize's


def inverse_column_norms(weight: torch.Tensor) -> torch.Tensor:
    """1 / ||column|| of a [d_in, n_dict] weight (differentiable)."""
    return 1.0 / weight.norm(dim=0).clamp_min(EPS)


def unit_columns(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(weight with unit-norm columns, the inverse column norms)."""
    inverse_norms = inverse_column_norms(weight)
    return weight * inverse_norms, inverse_norms


class _NormalisedDecode(torch.autograd.Function):
    @staticmethod
    def forward(ctx, codes: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        dictionary, inverse_norms = unit_columns(weight)
        ctx.save_for_backward(codes, dictionary, inverse_norms)
        return codes @ dictionary.T

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: torch.Tensor):
        codes, dictionary, inverse_norms = ctx.saved_tensors
        grad_codes = grad_weight = None
        if ctx.needs_input_grad[0]:
            grad_codes = grad @ dictionary
        if ctx.needs_input_grad[1]:
            grad_weight = grad.T @ codes  # dL/d(unit columns), [d_in, n_dict]
            along = (grad_weight * dictionary).sum(0)
            grad_weight.addcmul_(dictionary, -along).mul_(inverse_norms)
        return grad_codes, grad_weight


class _DictionaryRows(torch.autograd.Function):
    """(weight.T.contiguous(), inverse_column_norms(weight)) with autograd's gradient, bit for
    bit, formed in one contiguous [d_in, n_dict] buffer.

    Through autograd the rows' gradient comes back as a transposed view, and the sum with the
    norms' gradient ran over it with strided reads (0.14 s a step at GPT-2 small's 768 x 24576,
    benchmarks/bench_peers.py's profile in docs/performance.md), as did the norm backward's
    masked_fill of every element. Here the rows' gradient is transposed by a blocked copy and
    the same element-wise operations run in place; a column of norm 0 is still masked.
    """

    @staticmethod
    def forward(ctx, weight: torch.Tensor):
        norms = weight.norm(dim=0)
        inverse_norms = 1.0 / norms.clamp_min(EPS)
        ctx.save_for_backward(weight, norms, inverse_norms)
        return weight.T.contiguous(), inverse_norms

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_rows: torch.Tensor | None, grad_inverse: torch.Tensor | None):
        weight, norms, inverse_norms = ctx.saved_tensors
        grad = None
        if grad_inverse is not None:
            # autograd's chain, step by step: 1 / c = reciprocal(c) * 1.0, clamp_min, then the
            # 2-norm's backward, grad * (weight / norm).masked_fill_(norm == 0, 0)
            g = (-grad_inverse) * (inverse_norms * inverse_norms)
            g = torch.where(norms >= EPS, g, torch.zeros((), dtype=g.dtype, device=g.device))
            grad = weight / norms
            zero = norms == 0
            if bool(zero.any()):
                grad.masked_fill_(zero, 0)
            grad.mul_(g)
        if grad_rows is not None:
            rows = grad_rows.T.contiguous()
            grad = rows if grad is None else grad.add_(rows)
        return grad


def dictionary_rows(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(the [n_dict, d_in] rows of a [d_in, n_dict] weight, 1 / ||column||): what the sparse
    decoder reads; differentiable, with the gradient autograd would give."""
    return _DictionaryRows.apply(weight)


def normalised_decode(codes: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """codes [..., n_dict] @ normalize(weight [d_in, n_dict], dim=0).T, shape [..., d_in]."""
    flat = codes.reshape(-1, codes.shape[-1])
    return _NormalisedDecode.apply(flat, weight).reshape(*codes.shape[:-1], weight.shape[0])
