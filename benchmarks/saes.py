"""The SAEs the benchmarks time: the reference's dense SAE, a chosen L0, the sparse kernels,
and the trainer's optimizer step."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from sae_kit.architectures import SAE, SAEOutput, sparse

GRAD_CLIP = 10.0  # the trainer's default


class ReferenceSAE(nn.Module):
    """The reference implementation's (e2e_sae's) ReLU SAE, with the weights of ``like``.

    Dense matmuls, and the decoder normalised by ``F.normalize`` inside every forward pass, so
    autograd differentiates through that division. Same values as sae-kit's ``relu``.
    """

    def __init__(self, like: SAE) -> None:
        super().__init__()
        self.d_in = like.d_in
        for name, param in like.named_parameters():
            setattr(self, name, nn.Parameter(param.detach().clone()))

    def forward(self, x: torch.Tensor) -> SAEOutput:
        codes = torch.relu(x @ self.W_enc.T + self.b_enc)
        return SAEOutput(codes @ F.normalize(self.W_dec, dim=0).T + self.b_dec, codes)

    def sparsity_penalty(self, codes: torch.Tensor) -> torch.Tensor:
        return codes.abs().sum(-1).mean() / self.d_in


def set_l0(sae: SAE, x: torch.Tensor, l0: float) -> float:
    """Shift the encoder bias so that a ReLU SAE's mean L0 on ``x`` is about ``l0``.

    A trained SAE is sparse; a freshly initialised one has about half its codes on. Subtracting
    the (1 - l0/n_dict) quantile of the pre-activations from every bias gives the sparsity of
    training without training. Returns the L0 measured afterwards.
    """
    with torch.no_grad():
        pre = (x.reshape(-1, sae.d_in).to(sae.W_enc.dtype) @ sae.W_enc.T + sae.b_enc).flatten()
        k = max(1, min(pre.numel(), round(pre.numel() * (1 - l0 / sae.n_dict))))
        sae.b_enc -= pre.kthvalue(k).values
    return measure_l0(sae, x)


def measure_l0(sae: nn.Module, x: torch.Tensor) -> float:
    with torch.no_grad():
        return float((sae(x).codes != 0).sum(-1).float().mean())


def optimizer_step(sae: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """The trainer's: clip the gradient norm, Adam step, drop the gradients."""
    torch.nn.utils.clip_grad_norm_(sae.parameters(), GRAD_CLIP)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


@contextlib.contextmanager
def sparse_kernels(device: torch.device, max_density: float) -> Iterator[None]:
    """Run with the sparse kernels' density limit on ``device`` set (0: off, 1: always on)."""
    before = dict(sparse.MAX_DENSITY)
    sparse.MAX_DENSITY[device.type] = max_density
    try:
        yield
    finally:
        sparse.MAX_DENSITY.clear()
        sparse.MAX_DENSITY.update(before)


def add_step_args(p: argparse.ArgumentParser) -> None:
    """--reps, --threads, --device: the options of the SAE-step benchmarks."""
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--threads", type=int, default=2, help="torch threads on CPU; 0: default")
    p.add_argument("--device", default="cpu")


def step_device(args: argparse.Namespace) -> torch.device:
    """Set the thread count and return the device that ``add_step_args`` options name."""
    if args.threads:
        torch.set_num_threads(args.threads)
    return torch.device(args.device)
