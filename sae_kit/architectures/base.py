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
``sparsity_penalty``). An architecture whose every code is either its pre-activation
``(x @ W_enc.T + b_enc)[j]`` or zero (ReLU, TopK; not this one) implements ``select(pre)``
instead of ``encode(x)``, and then trains through sparse kernels once its codes are sparse
(:mod:`sae_kit.architectures.sparse`)::

    class ThresholdSAE(SAE):
        name = "threshold"

        def select(self, pre: torch.Tensor) -> torch.Tensor:
            return pre.masked_fill_(pre < 0.5, 0.0)  # pre is fresh: in place is fine

Options work as for losses: each field of the ``Options`` dataclass is an
``--arch-option key=value`` setting, read in the SAE as ``self.opts.<field>`` and saved with the
weights. An architecture without options leaves ``Options`` out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from sae_kit.architectures.auxk import refuse_auxk_without_topk
from sae_kit.architectures.decoder import dictionary_rows, normalised_decode, unit_columns
from sae_kit.architectures.sparse import (
    GatedCodes,
    KeptCodes,
    decode_active,
    gated_encode,
    sparse_max_density,
)
from sae_kit.errors import SaeKitError
from sae_kit.options import parse_options

BIAS_INITS = ("zeros", "uniform")


@dataclass
class BiasInitOptions:
    """``bias_init`` for architectures that offer the reference's initialisation (relu, topk)."""

    bias_init: str = field(default="zeros", metadata={
        "help": "zeros, or uniform: nn.Linear's default bias init, as the reference (e2e_sae) "
                "has; the weights stay those of the same seed's zeros init."})

    def __post_init__(self) -> None:
        if self.bias_init not in BIAS_INITS:
            raise SaeKitError(f"bias_init must be one of {', '.join(BIAS_INITS)}, "
                              f"got {self.bias_init!r}")


@dataclass
class SAEOutput:
    output: torch.Tensor
    """The reconstruction x-hat, same shape as the input."""
    codes: torch.Tensor
    """Dictionary coefficients c, shape (..., n_dict)."""
    penalty: torch.Tensor | None = None
    """The sparsity penalty where it needs more than the codes (JumpReLU's L0 reads the
    pre-activations); None: ``sparsity_penalty(codes)`` is it. Lambda multiplies either."""
    aux: dict[str, torch.Tensor] = field(default_factory=dict)
    """Loss terms of the architecture's own, already weighted, that every loss adds to its
    total in training mode (AuxK, Matryoshka's prefixes), by name."""
    logs: dict[str, torch.Tensor] = field(default_factory=dict)
    """Values logged in metrics.jsonl but not minimised (AuxK's dead fraction), by name."""
    active: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
    """(rows, cols, values) of the non-zero codes of the flattened codes, by row, when the
    sparse kernels listed them (None otherwise): statistics read them instead of scanning."""


class SAE(nn.Module):
    """x-hat = normalize_columns(W_dec) @ encode(x) + b_dec.

    The decoder columns are renormalised to unit norm inside every forward pass (a
    reparameterisation: gradients flow through the normalisation), so the L1 penalty on the
    codes cannot be dodged by growing the decoder.

    An architecture either implements ``encode`` (any codes), or, if each of its codes is its
    pre-activation ``(x @ W_enc.T + b_enc)[j]`` or zero, ``select`` (which picks them): then the
    base class encodes, and trains through sparse kernels once the codes are sparse.
    """

    name: ClassVar[str] = "base"
    penalised: ClassVar[bool] = True
    """False where ``sparsity_penalty`` is always zero (TopK): lambda then means nothing."""
    sparsity_options: ClassVar[tuple[str, ...]] = ()
    """Options that set the sparsity as lambda does (TopK's ``k``): SAEs that differ in them
    and lambda alone lie on one L0 vs CE-loss-increase frontier."""

    @dataclass
    class Options:
        pass

    def __init__(self, d_in: int, n_dict: int, **options: Any) -> None:
        super().__init__()
        self.opts = self.read_options(options)
        self.d_in = d_in
        self.n_dict = n_dict
        self.W_enc = nn.Parameter(torch.empty(n_dict, d_in))
        self.b_enc = nn.Parameter(torch.zeros(n_dict))
        self.W_dec = nn.Parameter(torch.empty(d_in, n_dict))
        self.b_dec = nn.Parameter(torch.zeros(d_in))
        self.register_parameter("W_skip", None)  # a skip transcoder's; see add_skip
        self.reset_parameters()

    @classmethod
    def read_options(cls, options: dict[str, Any]) -> Any:
        """The typed ``Options`` from ``key=value`` strings or values; one line on bad input."""
        refuse_auxk_without_topk(cls.name, cls.Options, options)
        return parse_options(cls.Options, options, cls.name)

    def reset_parameters(self) -> None:
        # Encoder as nn.Linear's default; decoder orthogonal, as in the paper.
        nn.init.kaiming_uniform_(self.W_enc, a=5**0.5)
        nn.init.orthogonal_(self.W_dec)
        if isinstance(self.opts, BiasInitOptions) and self.opts.bias_init == "uniform":
            # nn.Linear's default bias, U(-1/sqrt(fan_in), 1/sqrt(fan_in)): the reference's
            # encoder has fan-in d_in, its decoder n_dict. Drawn after the weights, so the
            # weights equal the zeros init's for the same seed.
            enc, dec = 1 / math.sqrt(self.d_in), 1 / math.sqrt(self.n_dict)
            nn.init.uniform_(self.b_enc, -enc, enc)
            nn.init.uniform_(self.b_dec, -dec, dec)

    def add_skip(self) -> None:
        """Make this a skip transcoder (Paulo et al. 2025): ``output += x @ W_skip.T``, an
        affine skip of the input, zeros at first, with any architecture's codes."""
        self.W_skip = nn.Parameter(torch.zeros(self.d_in, self.d_in, device=self.W_enc.device))

    @property
    def dict_elements(self) -> torch.Tensor:
        """Unit-norm dictionary elements, one per column: shape (d_in, n_dict)."""
        return unit_columns(self.W_dec)[0]

    @property
    def is_gated(self) -> bool:
        return type(self).select is not SAE.select

    def select(self, pre: torch.Tensor) -> torch.Tensor | KeptCodes:
        """Gated architectures: codes from the pre-activations, each equal to its own or zero.

        Runs without autograd on a fresh tensor, which it may change in place. A selection that
        knows where its codes may be non-zero (TopK) returns them as :class:`KeptCodes`, which
        spares the sparse kernels a scan of every code.
        """
        raise NotImplementedError

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        if not self.is_gated:
            raise NotImplementedError(f"{type(self).__name__} implements neither encode nor select")
        return self._encode_gated(x).codes.reshape(*x.shape[:-1], self.n_dict)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        return normalised_decode(codes, self.W_dec) + self.b_dec

    def _encode_gated(self, x: torch.Tensor) -> GatedCodes:
        flat = x.reshape(-1, self.d_in).contiguous()  # rows of x are gathered in the backward
        return gated_encode(flat, self.W_enc, self.b_enc, self.select,
                            sparse_max_density(x.device))

    def _decode_active(self, active: tuple[torch.Tensor, ...], n_tokens: int) -> torch.Tensor:
        """decode() of sparse codes given as (rows, cols, values): only active codes are read,
        each scaled by 1/||its column|| instead of normalising every column."""
        rows, cols, values = active
        out = decode_active(rows, cols, values, n_tokens, *dictionary_rows(self.W_dec))
        return out + self.b_dec

    def forward(self, x: torch.Tensor) -> SAEOutput:
        # fp32 (the parameters' dtype) even when the model around it runs under bf16 autocast.
        with torch.autocast(x.device.type, enabled=False):
            x = x.to(self.W_enc.dtype)
            if not self.is_gated:
                codes = self.encode(x)
                out = SAEOutput(output=self.decode(codes), codes=codes)
            else:
                out = self._gated_output(self._encode_gated(x), x.shape)
            self.add_skip_term(x, out)
            if self.training:
                self.add_training_terms(x, out)
            return out

    def _gated_output(self, gated: GatedCodes, shape: torch.Size) -> SAEOutput:
        codes = gated.codes.reshape(*shape[:-1], self.n_dict)
        if gated.active is None:
            return SAEOutput(output=self.decode(codes), codes=codes)
        output = self._decode_active(gated.active, gated.codes.shape[0])
        return SAEOutput(output=output.reshape(shape), codes=codes, active=gated.active)

    def add_skip_term(self, x: torch.Tensor, out: SAEOutput) -> None:
        """A skip transcoder's ``x @ W_skip.T`` added to the output (an architecture with its
        own ``forward`` calls this too)."""
        if self.W_skip is not None:
            out.output = out.output + x @ self.W_skip.T

    def add_training_terms(self, x: torch.Tensor, out: SAEOutput) -> None:
        """In training mode only: fill ``out.aux``/``out.logs`` and update training state
        (AuxK's dead-latent counter, BatchTopK's threshold). Nothing here by default."""

    def sparsity_penalty(self, codes: torch.Tensor) -> torch.Tensor:
        """Mean over tokens of ||c||_1, divided by d_in (the input width, not n_dict)."""
        # vector_norm, not abs().sum(): no [tokens, n_dict] temporary in the forward pass.
        return torch.linalg.vector_norm(codes, ord=1, dim=-1).mean() / self.d_in
