"""BatchTopK SAE (Bussmann et al. 2024, arXiv 2412.06410): the top k*B codes of a batch.

Training: over a batch of B tokens, the k*B largest ReLU pre-activations are kept, wherever they
fall, so a token may have more or fewer than k active latents and k is their mean. Inference:
a code is its pre-activation if that is above a threshold theta, else zero, so one token's codes
do not depend on the others.

theta is estimated during training, exactly so: after each training batch (each micro-batch,
each SAE forward in training mode), m is the smallest kept code that is positive; the first
such batch sets theta = m, every later one moves it by ``threshold_lr`` towards m,
theta <- theta + threshold_lr * (m - theta) (an exponential moving average of m; 0.01 is
SAELens' topk_threshold_lr). A batch with no positive code leaves theta alone. theta is saved
with the weights (buffer ``threshold``); ``inference=batch`` evaluates with batch top-k instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from sae_kit.architectures.sparse import KeptCodes
from sae_kit.architectures.topk import TopKOptions, TopKSAE
from sae_kit.errors import SaeKitError

INFERENCE = ("threshold", "batch")


@dataclass
class BatchTopKOptions(TopKOptions):
    k: int = field(default=32, metadata={"help": "Mean active latents per token: a batch of B "
                                                 "tokens keeps its k*B largest codes."})
    threshold_lr: float = field(default=0.01, metadata={
        "help": "Step of the running estimate of the inference threshold towards each batch's "
                "smallest kept code."})
    inference: str = field(default="threshold", metadata={
        "help": "Outside training: 'threshold' (code = pre-activation if above theta) or "
                "'batch' (batch top-k, as in training)."})

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.inference not in INFERENCE:
            raise SaeKitError(f"inference must be one of {', '.join(INFERENCE)}, "
                              f"got {self.inference!r}")
        if not 0 < self.threshold_lr <= 1:
            raise SaeKitError(f"threshold_lr must be in (0, 1], got {self.threshold_lr}")


class BatchTopKSAE(TopKSAE):
    name = "batchtopk"

    Options = BatchTopKOptions

    def __init__(self, d_in: int, n_dict: int, **options: Any) -> None:
        super().__init__(d_in, n_dict, **options)
        self.register_buffer("threshold", torch.zeros(()))  # 0: not estimated yet

    def select(self, pre: torch.Tensor) -> torch.Tensor | KeptCodes:
        pre = pre.relu_()
        if not self.training and self.opts.inference == "threshold":
            return pre.masked_fill_(pre <= self.threshold, 0.0)
        flat = pre.reshape(-1)
        top = flat.topk(min(self.opts.k * pre.shape[0], flat.numel()), sorted=False)
        if self.training:
            self._update_threshold(top.values)
        codes = torch.zeros_like(flat).scatter_(0, top.indices, top.values).reshape(pre.shape)
        return KeptCodes(codes, top.indices)

    def _update_threshold(self, kept: torch.Tensor) -> None:
        positive = kept[kept > 0]
        if positive.numel() == 0:
            return
        smallest = positive.min()
        if self.threshold == 0:
            self.threshold.copy_(smallest)
        else:
            self.threshold.add_(self.opts.threshold_lr * (smallest - self.threshold))
