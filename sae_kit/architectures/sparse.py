"""Sparse kernels for gated SAEs (ReLU, TopK): the step's cost follows L0, not n_dict.

A trained SAE's codes are sparse: L0 in the tens or low hundreds of an n_dict of thousands. A
dense SAE step spends four of its five matmuls on products with those codes or with their
gradient (decoder forward; decoder-weight, code and encoder-weight gradients). In a *gated*
architecture every code is either its pre-activation ``(x W_enc^T + b_enc)[j]`` or zero (ReLU,
TopK), so the gradient of the pre-activations is zero wherever a code is. Here, once the codes
are sparse enough, each of those four products touches only the non-zero codes, through
``F.embedding_bag`` (a weighted sum of selected rows, which PyTorch implements well):

- decoder: x-hat[t] = sum over active j of c[t, j] D[j]; autograd of ``embedding_bag`` gives the
  dictionary's gradient and one dot product per active code, never the dense product;
- encoder: its backward gets the active codes' gradients as a list and forms
  dW_enc[j] = sum over t of g[t, j] x[t] as an ``embedding_bag`` over the tokens where latent j
  is active (and the input's gradient, if wanted, as one over the latents active at a token).

Values and gradients equal the dense computation's up to summation order. Above a density where
dense BLAS is faster (a fresh SAE has about half its codes on) the dense computation runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch.autograd.function import once_differentiable

from sae_kit.architectures.codes import active, count_true

# Largest fraction of non-zero codes at which the sparse kernels run, per device type. On the
# 2-core CPU the SAE step with them took 0.79x the dense step's time at density 0.033 and 1.08x
# at 0.05 (d_model 128), 0.90x at 0.022 and 1.04x at 0.033 (d_model 768; ratio 60 both;
# benchmarks/bench_sparse_sae.py, docs/performance.md). Not measured on CUDA, so off there.
MAX_DENSITY: dict[str, float] = {"cpu": 0.025}


def sparse_max_density(device: torch.device) -> float:
    """Density of codes up to which the sparse kernels run on this device (0: never)."""
    is_compiling = getattr(torch.compiler, "is_compiling", None)  # torch >= 2.3
    if is_compiling is not None and is_compiling():  # data-dependent shapes; dense is fused
        return 0.0
    return MAX_DENSITY.get(device.type, 0.0)


def mask_is_sparse(mask: torch.Tensor, max_density: float) -> bool:
    """Whether few enough codes are set in ``mask`` for the sparse kernels to pay."""
    return _few_enough(count_true(mask), mask.numel(), max_density)


def _few_enough(n_active: int, n_codes: int, max_density: float) -> bool:
    return max_density > 0.0 and n_active <= max_density * n_codes


def _bag_offsets(sorted_keys: torch.Tensor, n_bags: int) -> torch.Tensor:
    """Start of each bag in a list sorted by bag: CSR row pointers without the last one."""
    counts = torch.bincount(sorted_keys, minlength=n_bags)
    return torch.cumsum(counts, 0) - counts


class KeptCodes(NamedTuple):
    """What a ``select`` may return instead of bare codes: the codes and where they may be set.

    ``positions`` are flat indices into ``codes`` (row-major, any order, no repeats) that
    include every non-zero code; zeros among them are dropped. A TopK selection knows them
    already, so the kernels need not scan the whole ``[tokens, n_dict]`` tensor to find them.
    """

    codes: torch.Tensor
    positions: torch.Tensor


def _listed_active(kept: KeptCodes, max_density: float
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
    """(rows, cols, values) of the non-zero codes among the listed positions, in the order
    ``nonzero`` gives (by row, then column), or None when they are too many for the kernels."""
    codes, positions = kept
    if max_density <= 0.0:
        return None
    flat = positions.reshape(-1).sort().values
    values = codes.reshape(-1).index_select(0, flat)
    keep = active(values)
    if not _few_enough(count_true(keep), codes.numel(), max_density):
        return None
    flat, values = flat[keep], values[keep]
    n_cols = codes.shape[1]
    return flat // n_cols, flat % n_cols, values


@dataclass
class GatedCodes:
    """Codes of a gated SAE on 2-D input, with their non-zero entries when they are sparse."""

    codes: torch.Tensor
    """Dense codes, [tokens, n_dict]; differentiable."""
    active: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None
    """(rows, cols, values) of the non-zero codes, sorted by row; values differentiable. None
    when the codes were too dense for the sparse kernels."""


class _GatedEncoder(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, select, max_density):
        ctx.set_materialize_grads(False)  # an unused output's gradient stays None, not zeros
        with torch.no_grad():
            selected = select(torch.addmm(bias, x, weight.T))
        listed = None
        if isinstance(selected, KeptCodes):
            codes = selected.codes
            listed = _listed_active(selected, max_density)
            ctx.sparse = listed is not None
        else:
            codes = selected
        if listed is None:
            gate = active(codes)  # one mask for the density check and the dense backward
            ctx.sparse = mask_is_sparse(gate, max_density)
        if not ctx.sparse:
            ctx.save_for_backward(x, weight, gate)
            return codes, None, None, None
        if listed is not None:
            rows, cols, values = listed
        else:
            rows, cols = gate.nonzero(as_tuple=True)
            values = codes.reshape(-1).index_select(0, rows * codes.shape[1] + cols)
        ctx.save_for_backward(x, weight, rows, cols)
        ctx.mark_non_differentiable(rows, cols)
        return codes, rows, cols, values

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_codes, _rows, _cols, grad_values):
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        if not ctx.sparse:
            x, weight, gate = ctx.saved_tensors
            if grad_codes is None:
                return None, None, None, None, None
            # The gate passes or blocks. A product, not masked_fill: 3x faster on CPU; a blocked
            # entry becomes 0 or -0, which sum alike in every product below.
            grad_pre = grad_codes * gate
            return (grad_pre @ weight if need_x else None, grad_pre.T @ x if need_w else None,
                    grad_pre.sum(0) if need_b else None, None, None)
        x, weight, rows, cols = ctx.saved_tensors
        g = grad_values  # from the sparse decoder; the dense codes' gradient (the penalty's) too
        if grad_codes is not None:
            at_active = grad_codes[rows, cols]
            g = at_active if g is None else g + at_active
        if g is None:
            return None, None, None, None, None
        n_tokens, n_out = x.shape[0], weight.shape[0]
        grad_x = grad_w = grad_b = None
        if need_x:
            grad_x = F.embedding_bag(cols, weight, _bag_offsets(rows, n_tokens), mode="sum",
                                     per_sample_weights=g)
        if need_w:
            by_latent = torch.argsort(cols, stable=True)
            grad_w = F.embedding_bag(rows[by_latent], x, _bag_offsets(cols[by_latent], n_out),
                                     mode="sum", per_sample_weights=g[by_latent])
        if need_b:
            grad_b = torch.zeros(n_out, dtype=g.dtype, device=g.device).index_add_(0, cols, g)
        return grad_x, grad_w, grad_b, None, None


def gated_encode(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                 select: Callable[[torch.Tensor], torch.Tensor],
                 max_density: float) -> GatedCodes:
    """codes = select(x @ weight.T + bias) for 2-D ``x``, with gradients for a gate.

    ``select`` gets the pre-activations (a fresh tensor it may change in place) and returns
    codes each equal to its pre-activation or zero, bare or as :class:`KeptCodes`; it runs
    without autograd.
    """
    codes, rows, cols, values = _GatedEncoder.apply(x, weight, bias, select, max_density)
    return GatedCodes(codes, None if rows is None else (rows, cols, values))


def decode_active(rows: torch.Tensor, cols: torch.Tensor, values: torch.Tensor, n_tokens: int,
                  dictionary: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """sum over active (t, j) of values * scale[j] * dictionary[j], per token t: [n_tokens, d].

    ``rows`` (sorted), ``cols`` and ``values`` list the non-zero codes; ``dictionary`` is
    [n_dict, d] and ``scale`` [n_dict]. Differentiable in values, dictionary and scale.
    """
    weights = values * scale.index_select(0, cols)
    return F.embedding_bag(cols, dictionary, _bag_offsets(rows, n_tokens), mode="sum",
                           per_sample_weights=weights)
