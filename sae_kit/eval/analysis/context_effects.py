"""Per-context effect of a feature: the change of KL at each later position when its code is
zeroed at one token only (the token a top context is centred on), the rest of the window as is.

The model is causal, so positions before that token cannot change; the report shows the change
at the token itself and the ``after`` tokens shown after it, and the total over the rest of the
window. Pure tensor code on one batch; :mod:`.importance` runs it in its exact-ablation pass.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sae_kit.architectures.base import SAE
from sae_kit.eval.analysis.attribution import CONVENTIONS, Forward, model_input


def position_kl(hidden: torch.Tensor, clean_hidden: torch.Tensor, unembed: nn.Module
                ) -> torch.Tensor:
    """KL(p_original || p_model) at every position, [rows, seq], one window's logits at a time."""
    out = []
    with torch.no_grad():
        for row in range(hidden.shape[0]):
            log_p = F.log_softmax(unembed(clean_hidden[row]).float(), dim=-1)
            log_q = F.log_softmax(unembed(hidden[row]).float(), dim=-1)
            out.append((log_p.exp() * (log_p - log_q)).sum(-1))
    return torch.stack(out).double()


def single_token_deltas(sae: SAE, codes: torch.Tensor, x: torch.Tensor, convention: str,
                        forward: Forward, input_ids: torch.Tensor, clean_hidden: torch.Tensor,
                        unembed: nn.Module, targets: torch.Tensor, rows_per_forward: int,
                        ) -> torch.Tensor:
    """ΔKL at every position, [len(targets), seq], for each (window, position, feature) target:
    that one code zeroed, every other code of the window kept."""
    seq = codes.shape[1]
    deltas = torch.zeros(len(targets), seq, dtype=torch.float64)
    if not len(targets):
        return deltas
    with torch.no_grad():
        h = model_input(sae, codes, x, convention)
        base = position_kl(forward(input_ids, h), clean_hidden, unembed)
        err = None if convention == "spliced" else x.to(codes.dtype) - sae.decode(codes)
        for lo in range(0, len(targets), rows_per_forward):
            window, position, feature = targets[lo:lo + rows_per_forward].unbind(1)
            zeroed = codes[window].clone()
            zeroed[torch.arange(len(window)), position, feature] = 0.0
            h = sae.decode(zeroed) if err is None else sae.decode(zeroed) + err[window]
            kl = position_kl(forward(input_ids[window], h), clean_hidden[window], unembed)
            deltas[lo:lo + len(window)] = (kl - base[window]).cpu()
    return deltas


class ContextEffects:
    """Over a pass's batches: for each top context (slot) of each chosen feature, ΔKL at its
    centre token and the ``after`` tokens after it (``near``, NaN past the window's end or for
    an empty slot), and summed over the rest of the window (``rest``), per convention."""

    def __init__(self, where: torch.Tensor, features: torch.Tensor, seq: int, after: int) -> None:
        self.where, self.features, self.seq, self.after = where, features, seq, after
        self.windows = 0
        k, n = where.shape
        self.near = {c: torch.full((k, n, after + 1), float("nan"), dtype=torch.float64)
                     for c in CONVENTIONS}
        self.rest = {c: torch.full((k, n), float("nan"), dtype=torch.float64)
                     for c in CONVENTIONS}

    def add(self, sae: SAE, codes: torch.Tensor, x: torch.Tensor, forward: Forward,
            input_ids: torch.Tensor, clean_hidden: torch.Tensor, unembed: nn.Module,
            rows_per_forward: int) -> None:
        window = self.where // self.seq - self.windows
        here = (self.where >= 0) & (window >= 0) & (window < codes.shape[0])
        self.windows += codes.shape[0]
        slot, column = here.nonzero(as_tuple=True)
        if not len(slot):
            return
        position = self.where[slot, column] % self.seq
        targets = torch.stack([window[slot, column], position, self.features[column]], 1)
        offsets = position[:, None] + torch.arange(self.after + 1)
        inside = offsets < self.seq
        later = torch.arange(self.seq)[None, :] > (position + self.after)[:, None]
        for convention in CONVENTIONS:
            deltas = single_token_deltas(sae, codes, x, convention, forward, input_ids,
                                         clean_hidden, unembed, targets.to(codes.device),
                                         rows_per_forward)
            near = deltas.gather(1, offsets.clamp(max=self.seq - 1))
            self.near[convention][slot, column] = near.masked_fill(~inside, float("nan"))
            self.rest[convention][slot, column] = (deltas * later).sum(1)
