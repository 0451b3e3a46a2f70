"""JumpReLU SAE (Rajamanoharan et al. 2024, arXiv 2407.14435; the Gemma Scope SAEs).

c_j = z_j H(z_j - theta_j), z = W_enc x + b_enc, with a per-latent threshold theta_j > 0
trained as log theta_j. The sparsity penalty is L0: lambda * mean over tokens of
sum_j H(z_j - theta_j), divided by d_in as ReLU's L1 is, so lambda is the paper's lambda for a
reconstruction error summed over the d_in elements (sae-kit's MSE is their mean).

H has no useful gradient, so theta gets straight-through ones through the rectangle kernel
K(u) = 1 if |u| < 1/2 else 0, of bandwidth epsilon (the paper's pseudo-derivatives):

    d c_j / d theta_j = -(theta_j / epsilon) K((z_j - theta_j) / epsilon)
    d H(z_j - theta_j) / d theta_j = -(1 / epsilon) K((z_j - theta_j) / epsilon)

and z gets the gate's gradient from c (none from the L0). Only the pairs (token, latent) in the
band |z - theta| < epsilon/2 carry a threshold gradient, so they are listed and decoded with
value 0 and a gradient to theta; the output is unchanged, and the sparse kernels still apply.
Defaults are Gemma Scope's: epsilon = 0.001, theta initialised to 0.001 (for inputs scaled to
unit mean squared norm; sae-kit's are raw activations, so the scale of theta follows theirs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from sae_kit.architectures.base import SAE, SAEOutput
from sae_kit.architectures.codes import count_true
from sae_kit.architectures.decoder import inverse_column_norms
from sae_kit.architectures.sparse import decode_active, gated_encode, sparse_max_density
from sae_kit.errors import SaeKitError


@dataclass
class JumpReLUOptions:
    bandwidth: float = field(default=0.001, metadata={
        "help": "epsilon: width of the straight-through kernel for the threshold's gradient."})
    init_threshold: float = field(default=0.001, metadata={
        "help": "Initial threshold theta of every latent."})

    def __post_init__(self) -> None:
        if not self.bandwidth > 0:
            raise SaeKitError(f"bandwidth must be above 0, got {self.bandwidth}")
        if not self.init_threshold > 0:
            raise SaeKitError(f"init_threshold must be above 0, got {self.init_threshold}")


class JumpReLUSAE(SAE):
    name = "jumprelu"
    # lambda reaches only theta (the L0's gradient is straight-through), and Adam moves
    # log(theta) by about the learning rate per step whatever lambda is: in a short run the
    # starting threshold sets the L0 more than lambda does (docs/experiments/architectures.md).
    sparsity_options = ("init_threshold",)

    Options = JumpReLUOptions

    def __init__(self, d_in: int, n_dict: int, **options) -> None:
        super().__init__(d_in, n_dict, **options)
        self.log_threshold = nn.Parameter(
            torch.full((n_dict,), math.log(self.opts.init_threshold)))

    @property
    def threshold(self) -> torch.Tensor:
        return self.log_threshold.exp()

    def select(self, pre: torch.Tensor) -> torch.Tensor:
        return pre.masked_fill_(pre <= self.threshold.detach(), 0.0)

    def sparsity_penalty(self, codes: torch.Tensor) -> torch.Tensor:
        """L0 / d_in (its value; the threshold's gradient comes from ``forward``)."""
        return codes.new_tensor(count_true(codes != 0) / codes[..., 0].numel() / self.d_in)

    def forward(self, x: torch.Tensor) -> SAEOutput:
        if not (self.training and torch.is_grad_enabled()):
            return super().forward(x)
        with torch.autocast(x.device.type, enabled=False):
            x = x.to(self.W_enc.dtype)
            theta = self.threshold
            band: list[tuple[torch.Tensor, torch.Tensor]] = []

            def select(pre: torch.Tensor) -> torch.Tensor:
                near = (pre - theta.detach()).abs_() < self.opts.bandwidth / 2
                band.append(near.nonzero(as_tuple=True))  # sorted by token
                return self.select(pre)

            flat = x.reshape(-1, self.d_in).contiguous()
            gated = gated_encode(flat, self.W_enc, self.b_enc, select,
                                 sparse_max_density(x.device))
            out = self._gated_output(gated, x.shape)
            rows, cols = band[0]
            out.output = out.output + self._jump(rows, cols, theta, flat.shape[0]).reshape(x.shape)
            out.penalty = self._l0_penalty(out.codes, cols, theta, flat.shape[0])
            self.add_skip_term(x, out)
            return out

    def _jump(self, rows: torch.Tensor, cols: torch.Tensor, theta: torch.Tensor,
              n_tokens: int) -> torch.Tensor:
        """Zero, with d/d theta_j of the decode of each band code = -(theta_j / eps) dL/dc."""
        at = theta.index_select(0, cols)
        zero = (at - at.detach()) * (-at.detach() / self.opts.bandwidth)
        with torch.no_grad():
            dictionary = self.W_dec.T.contiguous()
            scale = inverse_column_norms(self.W_dec)
        return decode_active(rows, cols, zero, n_tokens, dictionary, scale)

    def _l0_penalty(self, codes: torch.Tensor, cols: torch.Tensor, theta: torch.Tensor,
                    n_tokens: int) -> torch.Tensor:
        """mean_t sum_j H(z - theta) / d_in, with the kernel's gradient for theta."""
        at = theta.index_select(0, cols)
        zero = (at - at.detach()).sum() * (-1 / self.opts.bandwidth)
        return (self.sparsity_penalty(codes.detach()) + zero / n_tokens / self.d_in)
