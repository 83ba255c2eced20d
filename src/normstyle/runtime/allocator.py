"""How the C library hands memory to torch on the CPU: keep freed blocks for the next iteration.

An iteration of the style loop allocates and frees the same few hundred tensors every time, the
largest tens of megabytes each. PyTorch has no caching allocator on the CPU, so each of them goes
to glibc's ``malloc``, which by default returns large blocks to the kernel when they are freed
(``munmap``, or trimming the top of the heap) and maps them again on the next iteration: every
page is then faulted in and zeroed by the kernel anew. Measured on a 2-core AMD EPYC with torch
limited to AVX2 (40 iterations at 256 px): 1.56 million minor page faults and 4.8 s of system time
by default, 0.31 million and 0.8 s with the settings below, which keep blocks up to 32 MiB (glibc's
largest mmap threshold) on the heap and never trim it below what a run has used.

The cost is that a process keeps the memory of its largest iteration until it exits, which is
what a stylisation does anyway. Only glibc is tuned; with any other C library (musl, macOS,
Windows) this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import sys

# mallopt(3) parameters (glibc's malloc.h).
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3
# glibc refuses an mmap threshold above HEAP_MAX_SIZE / 2 (32 MiB on 64-bit systems).
MMAP_THRESHOLD = 32 << 20
# Free memory at the top of the heap is returned to the kernel only past this much.
TRIM_THRESHOLD = 1 << 30
# Extra memory asked of the kernel each time the heap grows, so that it grows rarely.
TOP_PAD = 64 << 20


@functools.cache
def keep_freed_memory() -> bool:
    """Tune glibc's ``malloc`` to reuse freed large blocks instead of returning them to the
    kernel (see the module docstring). Returns whether it applied (glibc found and every
    setting accepted); idempotent, and harmless where it does not apply."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        if not hasattr(libc, "gnu_get_libc_version"):  # glibc only: musl's mallopt is a stub
            return False
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    settings = (
        (_M_MMAP_THRESHOLD, MMAP_THRESHOLD),
        (_M_TRIM_THRESHOLD, TRIM_THRESHOLD),
        (_M_TOP_PAD, TOP_PAD),
    )
    return all(mallopt(parameter, value) == 1 for parameter, value in settings)
