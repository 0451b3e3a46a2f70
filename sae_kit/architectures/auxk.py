"""AuxK (Gao et al. 2024, "Scaling and evaluating sparse autoencoders", arXiv 2406.04093,
section 2.4 and appendix A.2): dead latents are given a reason to revive.

A latent is dead when it has not fired (a non-zero code) on any of the last ``dead_tokens``
training tokens. On every training batch the ``auxk_k`` largest pre-activations among the dead
latents (ReLU'd) reconstruct the residual e = x - x-hat through their unit decoder columns,
without b_dec:

    e-hat = sum over the top auxk_k dead j of relu(pre_j) d_j,   L_aux = MSE(e-hat, e.detach())

and ``auxk_coeff * L_aux`` joins the loss. Only dead latents' encoder rows, biases and decoder
columns get its gradient. Defaults are the paper's: auxk_k = 512, alpha = 1/32, dead after
10M tokens without firing. The paper normalises L_aux and the main MSE alike (each by its
target); sae-kit's MSE terms are element means, so L_aux is one too. Under e2e and e2e+ds, x is
the SAE's input at its hook point and x-hat its output there: the residual is the hook point's.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from sae_kit.architectures.codes import fired_and_count
from sae_kit.architectures.decoder import dictionary_rows
from sae_kit.architectures.sparse import decode_active
from sae_kit.errors import SaeKitError


@dataclass
class AuxKOptions:
    auxk: bool = field(default=False, metadata={
        "help": "Add AuxK (Gao et al. 2024): the dead latents' top auxk_k pre-activations "
                "reconstruct the residual x - x-hat; dead_fraction goes to metrics.jsonl."})
    auxk_k: int = field(default=512, metadata={
        "help": "AuxK: dead latents that reconstruct the residual (Gao et al.: 512)."})
    auxk_coeff: float = field(default=1 / 32, metadata={
        "help": "AuxK: weight alpha of its MSE (Gao et al.: 1/32)."})
    dead_tokens: int = field(default=10_000_000, metadata={
        "help": "AuxK: a latent is dead after this many training tokens without firing "
                "(Gao et al.: 10M)."})

    def __post_init__(self) -> None:
        if self.auxk_k < 1:
            raise SaeKitError(f"auxk_k must be at least 1, got {self.auxk_k}")
        if not self.auxk_coeff >= 0:
            raise SaeKitError(f"auxk_coeff must be 0 or more, got {self.auxk_coeff}")
        if self.dead_tokens < 1:
            raise SaeKitError(f"dead_tokens must be at least 1, got {self.dead_tokens}")


def refuse_auxk_without_topk(owner: str, options_cls: type, given: dict[str, Any]) -> None:
    """One line for an AuxK option given to an architecture that has no TopK selection (relu,
    jumprelu): its dead latents have no top-k to be ranked by, so AuxK means nothing there."""
    auxk = {f.name for f in dataclasses.fields(AuxKOptions)}
    takes = {f.name for f in dataclasses.fields(options_cls)}
    for key in given:
        name = key.replace("-", "_")
        if name in auxk and name not in takes:
            raise SaeKitError(f"AuxK ({name}) needs TopK selection, which {owner!r} has not: "
                              "use the topk, batchtopk or matryoshka architecture, or drop "
                              f"the {name} option")


class AuxK:
    """Mixin for SAE architectures with TopK selection (topk, batchtopk, matryoshka)."""

    def init_auxk(self) -> None:
        if self.opts.auxk:  # only then: a plain TopK SAE's weight file stays as it was
            self.register_buffer("tokens_since_fired", torch.zeros(self.n_dict, dtype=torch.int64))

    def auxk_terms(self, x: torch.Tensor, out) -> None:
        """Add ``auxk`` to ``out.aux`` and ``dead_fraction`` to ``out.logs``; count the tokens
        since each latent fired (dead is judged before this batch is counted)."""
        if not self.opts.auxk:
            return
        flat = x.reshape(-1, self.d_in)
        with torch.no_grad():
            fired = fired_and_count(out.codes, out.active)[0]
            dead = self.tokens_since_fired >= self.opts.dead_tokens
            self.tokens_since_fired.add_(flat.shape[0]).masked_fill_(fired, 0)
        out.logs["dead_fraction"] = dead.float().mean()
        out.aux["auxk"] = self.opts.auxk_coeff * self.auxk_loss(
            flat, out.output.reshape(-1, self.d_in), dead)

    def auxk_loss(self, x: torch.Tensor, x_hat: torch.Tensor, dead: torch.Tensor
                  ) -> torch.Tensor:
        """MSE of the dead latents' reconstruction of the residual (zero when none is dead)."""
        residual = (x - x_hat).detach()
        idx = dead.nonzero().squeeze(1)
        if idx.numel() == 0:
            return x.new_zeros(())
        pre = torch.addmm(self.b_enc[idx], x, self.W_enc[idx].T)
        top = pre.topk(min(self.opts.auxk_k, idx.numel()), dim=-1)
        n_tokens, k = top.values.shape
        rows = torch.arange(n_tokens, device=x.device).repeat_interleave(k)
        recon = decode_active(rows, idx[top.indices].reshape(-1), top.values.relu().reshape(-1),
                              n_tokens, *dictionary_rows(self.W_dec))
        return F.mse_loss(recon, residual)
