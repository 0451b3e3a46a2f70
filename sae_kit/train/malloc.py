"""Ask the C allocator to keep freed CPU buffers for reuse (Linux with glibc).

A CPU training step allocates and frees many short-lived tensors of 50-150 MB (``[tokens,
n_dict]`` codes, masks and their gradients). glibc serves an allocation that large with a fresh
``mmap`` and hands it back with ``munmap`` when freed, so every step the kernel maps and
zero-fills those pages again: up to a third of a step's CPU time went to system time. With
``mmap`` off for such requests (``M_MMAP_MAX`` 0) and the heap's free top kept instead of
trimmed (``M_TRIM_THRESHOLD``), the next step reuses the same memory. The process's peak memory
is what it was; it is just not returned to the system until exit.

Elsewhere (macOS, musl), or where the user chose either behaviour themselves
(``SAE_KIT_MALLOC=system`` to keep glibc's defaults, or ``THP_MEM_ALLOC_ENABLE``), nothing is
changed here; then transparent huge pages (``THP_MEM_ALLOC_ENABLE=1``) are asked of torch as
before: fewer, larger page faults, though the pages are still freed and faulted every step.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

# glibc's mallopt parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4


def keep_freed_memory() -> bool:
    """Set glibc up to reuse freed large buffers; whether it was done. Call before torch loads."""
    if os.environ.get("SAE_KIT_MALLOC") == "system" or "THP_MEM_ALLOC_ENABLE" in os.environ:
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # The trim threshold is an int here: the largest one, so the top is never given back.
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, 2**31 - 1))


def for_library() -> bool:
    """The setting for the Python API (``sae_kit.train``): the same heap reuse as the command.

    torch is loaded by then, so the huge-pages fallback (read at torch's first allocation) is
    not tried; mallopt still applies to every allocation from here on. Whether it was done.
    """
    return keep_freed_memory()


def configure() -> None:
    """The sae-kit command's allocator settings (see the module doc)."""
    if not keep_freed_memory():
        # torch reads this once, at its first allocation, so it is set before torch loads; a
        # value the user set is kept.
        os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
