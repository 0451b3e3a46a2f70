"""Peak memory of the KL part of an e2e step (logits, softmaxes, KL, its backward).

Used by bench_e2e_step.py. On CUDA: torch.cuda.max_memory_allocated above what the inputs hold.
On CPU (Linux), torch keeps no allocator statistics, so each measurement runs in a fresh
single-threaded process (this file, run with a JSON spec) that builds its inputs, resets the
kernel's peak-RSS mark (/proc/self/clear_refs) and reads the peak (VmHWM) after the forward and
backward: freed memory the C allocator keeps resident counts against the measured variant.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

from sae_kit.losses.chunked_kl import chunked_kl


def _kl_inputs(tokens: int, vocab: int, d_model: int, device: torch.device):
    gen = torch.Generator().manual_seed(0)
    weight = (torch.randn(vocab, d_model, generator=gen) * 0.02).to(device)
    clean = torch.randn(tokens, d_model, generator=gen).to(device)
    spliced = (clean + 0.1 * torch.randn(tokens, d_model, generator=gen).to(device))
    return clean, spliced.requires_grad_(), weight


def naive_kl(clean: torch.Tensor, spliced: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        clean_logits = F.linear(clean, weight)
    return F.kl_div(F.log_softmax(F.linear(spliced, weight), dim=-1),
                    F.log_softmax(clean_logits, dim=-1), log_target=True, reduction="batchmean")


def _proc_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def kl_peak_bytes(kind: str, tokens: int, vocab: int, d_model: int, chunk: int,
                  device: torch.device) -> int:
    """Peak memory above what the inputs already hold, for the KL's forward and backward."""
    clean, spliced, weight = _kl_inputs(tokens, vocab, d_model, device)
    if kind == "naive":
        def run() -> None:
            naive_kl(clean, spliced, weight).backward()
    else:
        def run() -> None:
            chunked_kl(clean, spliced, weight, None, chunk).backward()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
        run()
        torch.cuda.synchronize(device)
        return torch.cuda.max_memory_allocated(device) - base
    base = _proc_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # peak RSS := current RSS
    run()
    return (_proc_kib("VmHWM") - base) * 1024


def _in_subprocess(kind: str, tokens: int, vocab: int, d_model: int, chunk: int) -> int | None:
    """CPU: a fresh process per measurement, so no allocator state carries over."""
    if not Path("/proc/self/clear_refs").exists():
        return None
    spec = {"kind": kind, "tokens": tokens, "vocab": vocab, "d_model": d_model, "chunk": chunk}
    done = subprocess.run([sys.executable, __file__, json.dumps(spec)], capture_output=True,
                          text=True, check=True)
    return int(done.stdout.strip().splitlines()[-1])


def kl_peaks(tokens: int, vocab: int, d_model: int, chunk: int,
             device: torch.device) -> dict[str, int | None]:
    """Peak bytes of the naive and the chunked KL, by name."""
    kinds = ("naive", "sae-kit")
    if device.type == "cuda":
        return {k: kl_peak_bytes(k, tokens, vocab, d_model, chunk, device) for k in kinds}
    return {k: _in_subprocess(k, tokens, vocab, d_model, chunk) for k in kinds}


if __name__ == "__main__":
    # One thread: a second thread's malloc arena keeps freed chunks resident and blurs RSS.
    torch.set_num_threads(1)
    print(kl_peak_bytes(device=torch.device("cpu"), **json.loads(sys.argv[1])))
