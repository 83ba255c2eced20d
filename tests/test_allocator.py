"""glibc's malloc keeps freed blocks for reuse once told to (runtime/allocator.py), checked by
the kernel's own count of page faults in fresh processes."""

from __future__ import annotations

import subprocess
import sys

import pytest

from normstyle.runtime.allocator import keep_freed_memory

# Eight 8 MiB tensors written and freed, ten times over; prints the minor page faults it took.
ROUNDS = """
import resource, sys, torch
from normstyle.runtime.allocator import keep_freed_memory
if sys.argv[1] == "tuned":
    assert keep_freed_memory()
def one_round():
    blocks = [torch.ones(2 << 20) for _ in range(8)]
    del blocks
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
    # 80 rounds of 8 MiB written anew: ~20k faults of 4 KiB pages if every block is mapped afresh.
    assert default > 10_000
    assert tuned < default / 5


def test_it_is_idempotent() -> None:
    assert keep_freed_memory() == keep_freed_memory()
