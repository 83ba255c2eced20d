"""glibc's malloc keeps freed blocks for reuse once told to (runtime/allocator.py), checked by
the kernel's own count of page faults in fresh processes."""

from __future__ import annotations

import subprocess
import sys

import pytest

from normstyle.runtime.allocator import keep_freed_memory

# Three 24 MiB blocks from malloc, written and freed, ten times over (through the C library
# itself, so that nothing else allocates in between); prints the minor page faults it took.
ROUNDS = """
import ctypes, ctypes.util, resource, sys
from normstyle.runtime.allocator import keep_freed_memory
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
if sys.argv[1] == "tuned":
    assert keep_freed_memory()
size = 24 << 20
def one_round():
    blocks = [libc.malloc(size) for _ in range(3)]
    for block in blocks:
        ctypes.memset(block, 1, size)
    for block in blocks:
        libc.free(block)
one_round()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    one_round()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> int:
    done = subprocess.run(
        [sys.executable, "-c", ROUNDS, mode], capture_output=True, text=True, check=True
    )
    return int(done.stdout.strip())


def test_freed_blocks_are_reused_without_page_faults() -> None:
    if not keep_freed_memory():
        pytest.skip("not glibc on Linux: malloc is left as it is")
    default, tuned = _faults("default"), _faults("tuned")
    # 30 blocks of 24 MiB written anew: ~184k faults of 4 KiB pages where each is mapped afresh
    # (glibc's default for blocks this large), none where the freed blocks are reused.
    assert default > 100_000
    assert tuned < default / 50


def test_it_is_idempotent() -> None:
    assert keep_freed_memory() == keep_freed_memory()
