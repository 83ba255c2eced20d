"""How much memory a stylisation (or a forward pass over a folder) needs, and how much this
machine has.

Checked before a run starts, so that a run which cannot fit is refused in one line instead of
being killed by the kernel half-way (or grinding for minutes first: ``--style-scale 100`` once
asked for a 6400 px style image beside a 64 px output). The model is linear in pixels, with
coefficients measured as whole-process peak RSS on the real VGG-19 up to relu5_1 (torch 2.13.0
CPU, 2026-11-24; see README, "Memory"); it is a guard, not a promise.
"""

from __future__ import annotations

import contextlib
import math
import os
from pathlib import Path

from normstyle.errors import OptionError

GB = 1e9
# Python, torch, the decoded weights and their normalised copy (measured: 665 MB once built).
BASE_BYTES = 0.7 * GB
# Per output pixel while optimising: the activations kept for the backward pass, the gradient,
# the image copies of the optimiser (peak RSS, 3 iterations at 512 and 1024 px: 2550 B/px in
# fp32, 2100 B/px in bf16; fp16 as bf16).
BYTES_PER_OUTPUT_PIXEL = {"fp32": 2600, "bf16": 2100, "fp16": 2100}
# Per output pixel and stored L-BFGS curvature pair: s and y, three fp32 channels each, are 24 B;
# peak RSS grew by 39 B/px per pair (512 px, bf16: 0.99 GB after 3 iterations, 1.76 GB after 110).
BYTES_PER_HISTORY_PIXEL = 40
# Per style (or content) pixel for computing the targets: a forward pass without gradients
# keeps about two full-resolution maps alive (measured 380–570 B/px at 1024 and 2048 px).
BYTES_PER_TARGET_PIXEL = 600


def stylization_bytes(
    output_pixels: int, target_pixels: int, history: int, precision: str = "fp32"
) -> float:
    """Estimated peak memory of one level: ``output_pixels`` optimised with ``history`` L-BFGS
    pairs, after targets computed on images of at most ``target_pixels``."""
    optimising = output_pixels * (
        BYTES_PER_OUTPUT_PIXEL.get(precision, BYTES_PER_OUTPUT_PIXEL["fp32"])
        + BYTES_PER_HISTORY_PIXEL * history
    )
    return BASE_BYTES + max(optimising, target_pixels * BYTES_PER_TARGET_PIXEL)


def available_memory() -> float | None:
    """Bytes this process can still allocate: MemAvailable, capped by a cgroup v2/v1 limit;
    None where neither can be read."""
    candidates: list[float] = []
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                candidates.append(float(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    for limit_file, usage_file in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        (
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
            "/sys/fs/cgroup/memory/memory.usage_in_bytes",
        ),
    ):
        try:
            limit_text = Path(limit_file).read_text().strip()
            if limit_text == "max":
                continue
            limit = float(limit_text)
            if limit >= 2**60:  # cgroup v1's "unlimited"
                continue
            candidates.append(limit - float(Path(usage_file).read_text().strip()))
        except (OSError, ValueError):
            continue
    if not candidates and hasattr(os, "sysconf"):
        with contextlib.suppress(ValueError, OSError):
            candidates.append(float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")))
    return min(candidates) if candidates else None


def max_forward_pixels(bytes_per_pixel: float = BYTES_PER_TARGET_PIXEL) -> int | None:
    """The largest image (in pixels) one forward pass without gradients can take in the
    memory available now, or None if that is unknown."""
    available = available_memory()
    if available is None:
        return None
    return max(0, int((available - BASE_BYTES) / bytes_per_pixel))


def check_fits(needed: float, what: str, available: float | None = None) -> None:
    """Raise :class:`OptionError` if ``needed`` bytes exceed the available memory."""
    available = available_memory() if available is None else available
    if available is None or not math.isfinite(needed):
        return
    if needed > available:
        raise OptionError(
            f"{what} needs about {needed / GB:.1f} GB of memory and {available / GB:.1f} GB"
            " are available: lower --size (or --style-scale)"
        )
