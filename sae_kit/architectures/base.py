"""The interface every SAE architecture implements.

A complete architecture plugin (``my_sae.py``), registered in its ``pyproject.toml`` as
``[project.entry-points."sae_kit.architectures"] tanh = "my_sae:TanhSAE"``::

    from dataclasses import dataclass, field

    import torch
    from sae_kit.architectures import SAE

    class TanhSAE(SAE):
        name = "tanh"

        @dataclass
        class Options:
            scale: float = field(default=1.0, metadata={"help": "Multiplies the codes."})

        def encode(self, x: torch.Tensor) -> torch.Tensor:
            pre = torch.relu(x @ self.W_enc.T + self.b_enc)
            return self.opts.scale * torch.tanh(pre)

The base class owns the parameters, the decoder-column normalisation and the L1 penalty, so an
architecture only says how codes are computed (and, if it needs no penalty, overrides
``sparsity_penalty``). Options work as for losses: each field of the ``Options`` dataclass is an
``--arch-option key=value`` setting, read in the SAE as ``self.opts.<field>`` and saved with the
weights. An architecture without options leaves ``Options`` out.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from sae_kit.options import parse_options


@dataclass
class SAEOutput:
    output: torch.Tensor
    """The reconstruction x-hat, same shape as the input."""
    codes: torch.Tensor
    """Dictionary coefficients c, shape (..., n_dict)."""


class SAE(nn.Module):
    """x-hat = normalize_columns(W_dec) @ encode(x) + b_dec.

    The decoder columns are renormalised to unit norm inside every forward pass (a
    reparameterisation: gradients flow through the normalisation), so the L1 penalty on the
    codes cannot be dodged by growing the decoder.
    """

    name: ClassVar[str] = "base"

    @dataclass
    class Options:
        pass

    def __init__(self, d_in: int, n_dict: int, **options: Any) -> None:
        super().__init__()
        self.opts = parse_options(self.Options, options, self.name)
        self.d_in = d_in
        self.n_dict = n_dict
        self.W_enc = nn.Parameter(torch.empty(n_dict, d_in))
        self.b_enc = nn.Parameter(torch.zeros(n_dict))
        self.W_dec = nn.Parameter(torch.empty(d_in, n_dict))
        self.b_dec = nn.Parameter(torch.zeros(d_in))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # Encoder as nn.Linear's default; decoder orthogonal, as in the paper.
        nn.init.kaiming_uniform_(self.W_enc, a=5**0.5)
        nn.init.orthogonal_(self.W_dec)

    def options(self) -> dict[str, Any]:
        """Architecture-specific constructor options, saved with the weights."""
        return dataclasses.asdict(self.opts)

    @property
    def dict_elements(self) -> torch.Tensor:
        """Unit-norm dictionary elements, one per column: shape (d_in, n_dict)."""
        return F.normalize(self.W_dec, dim=0)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return codes @ self.dict_elements.T + self.b_dec

    def forward(self, x: torch.Tensor) -> SAEOutput:
        # fp32 (the parameters' dtype) even when the model around it runs under bf16 autocast.
        with torch.autocast(x.device.type, enabled=False):
            codes = self.encode(x.to(self.W_enc.dtype))
            return SAEOutput(output=self.decode(codes), codes=codes)

    def sparsity_penalty(self, codes: torch.Tensor) -> torch.Tensor:
        """Mean over tokens of ||c||_1, divided by d_in (the input width, not n_dict)."""
        return codes.abs().sum(-1).mean() / self.d_in
