"""What the `sae-kit` entry point does before any command runs."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.integration  # the CLI in subprocesses


def test_importing_the_cli_does_not_import_torch():
    # torch reads THP_MEM_ALLOC_ENABLE once, at its first allocation, and glibc's settings
    # should be made before large allocations: main() sets both before torch is imported.
    code = "import sys, sae_kit.cli; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "False"


# glibc's allocator statistics, read through ctypes by both probes below.
_MALLINFO = """
class Info(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in "arena ordblks smblks hblks hblkhd "
                "usmblks fsmblks uordblks fordblks keepcost".split()]
mallinfo2 = ctypes.CDLL("libc.so.6").mallinfo2
mallinfo2.restype = Info
"""

# Run in a child: main() sets the allocator up for the whole process. It prints whether a live
# 64 MB tensor sits in an mmapped region (glibc's mallinfo2) and what THP_MEM_ALLOC_ENABLE became.
_PROBE = """
import ctypes, os, sys
from sae_kit import cli
sys.argv = ["sae-kit", "--version"]
try:
    cli.main()
except SystemExit:
    pass
import torch
""" + _MALLINFO + """
x = torch.ones(2**24)
print(mallinfo2().hblkhd >= x.numel() * 4, os.environ.get("THP_MEM_ALLOC_ENABLE"))
"""


def _probe(**env: str) -> list[str]:
    clean = {k: v for k, v in os.environ.items()
             if k not in ("SAE_KIT_MALLOC", "THP_MEM_ALLOC_ENABLE")}
    done = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True,
                          env={**clean, **env})
    if "mallinfo2" in done.stderr:
        pytest.skip("needs glibc >= 2.33 (mallinfo2) to look at the allocator")
    assert done.returncode == 0, done.stderr
    return done.stdout.split()[-2:]  # after the version main() printed


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator: Linux")
def test_main_keeps_large_freed_buffers_in_the_heap():
    assert _probe() == ["False", "None"]  # no mmap for the tensor; no huge pages asked


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator: Linux")
def test_the_user_can_keep_glibcs_defaults_or_choose_huge_pages():
    assert _probe(SAE_KIT_MALLOC="system") == ["True", "1"]  # mmapped, huge pages as before
    assert _probe(THP_MEM_ALLOC_ENABLE="0") == ["True", "0"]  # the user's choice is kept


# The Python API sets the allocator up when it trains: a tiny run, then the same probe.
_API_PROBE = """
import ctypes, sys
import torch
from sae_kit import TrainConfig, train_saes
train_saes(TrainConfig(model=sys.argv[1], dataset="pydoc", hook_points=["blocks.1.hook_resid_pre"],
                       n_samples=4, batch_size=2, grad_accum=1,
                       context=16, output_dir=sys.argv[2], device="cpu"))
""" + _MALLINFO + """
x = torch.ones(2**24)
print(mallinfo2().hblkhd >= x.numel() * 4)
"""


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator: Linux")
@pytest.mark.parametrize("env, mmapped", [({}, "False"), ({"SAE_KIT_MALLOC": "system"}, "True")])
def test_the_python_api_reuses_freed_buffers_as_the_command_does(tiny_gpt2, tmp_path, env,
                                                                 mmapped):
    clean = {k: v for k, v in os.environ.items()
             if k not in ("SAE_KIT_MALLOC", "THP_MEM_ALLOC_ENABLE")}
    done = subprocess.run([sys.executable, "-c", _API_PROBE, str(tiny_gpt2), str(tmp_path / "r")],
                          capture_output=True, text=True, env={**clean, **env})
    if "mallinfo2" in done.stderr:
        pytest.skip("needs glibc >= 2.33 (mallinfo2) to look at the allocator")
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[-1] == mmapped
