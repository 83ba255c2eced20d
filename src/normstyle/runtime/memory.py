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
import re
from dataclasses import dataclass
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


# Per output pixel, whatever the bands: the image-sized fp32 tensors of the optimiser (the image,
# its candidate, gradient and copies: about ten of 12 B), the gradient the bands add into and the
# content targets (512 channels at 1/64 of the pixels).
BYTES_PER_WHOLE_PIXEL = 200
# The default of --max-memory: a laptop's share, or less where less is available.
DEFAULT_MAX_MEMORY = 6 * GB
AVAILABLE_SHARE = 0.8
# L-BFGS keeps at least this many curvature pairs when memory is short (below ~10 its steps lose
# most of what makes them better than gradient descent).
MIN_HISTORY = 10


@dataclass(frozen=True)
class LevelMemory:
    """How a level is run within a memory budget: its L-BFGS history and, where the whole image
    does not fit, the own (rows, columns) of each tile (``tile``; None: the image in one piece;
    columns equal to the width: bands of rows)."""

    history: int
    tile: tuple[int, int] | None
    needed: float  # bytes, as planned


def plan_level_memory(
    width: int,
    height: int,
    target_pixels: int,
    history: int,
    precision: str,
    budget: float,
    stride: int,
    halo: int,
    tile: int | None = None,
    what: str = "the image",
) -> LevelMemory:
    """The longest L-BFGS history (up to ``history``) and the largest tiles that fit ``budget``
    bytes for a ``width`` × ``height`` output (the network's ``stride`` and ``halo`` in pixels).

    In order of preference: the whole image with the full history; the whole image with a
    shorter history (down to :data:`MIN_HISTORY`); bands of rows as tall as fit beside the
    longest history that leaves them at least twice the halo of own rows; square tiles of that
    size where the rows are too wide for such bands; the smallest tiles (one stride) with the
    shortest history. ``tile`` (--tile) forces tiles of that side (bands where the image is no
    wider). Raises :class:`OptionError` in one line if even the last does not fit.
    """
    pixels = width * height
    per_pixel = BYTES_PER_OUTPUT_PIXEL.get(precision, BYTES_PER_OUTPUT_PIXEL["fp32"])
    floor = min(history, MIN_HISTORY)
    pair_counts = [history, *range(history - 1, floor - 1, -1)]

    def fixed(pairs: int) -> float:  # everything but the tile's activations
        return BASE_BYTES + pixels * (BYTES_PER_WHOLE_PIXEL + BYTES_PER_HISTORY_PIXEL * pairs)

    def tile_bytes(rows: int, columns: int) -> float:
        return per_pixel * min(height, rows + 2 * halo) * min(width, columns + 2 * halo)

    def targets(rows: int, columns: int) -> float:  # the no-gradient pass over the largest image
        share = min(1.0, (rows + 2 * halo) * (columns + 2 * halo) / pixels)
        return BASE_BYTES + target_pixels * share * BYTES_PER_TARGET_PIXEL

    def planned(pairs: int, rows: int, columns: int) -> LevelMemory:
        rows = height if rows >= height else max(stride, rows // stride * stride)
        columns = width if columns >= width else max(stride, columns // stride * stride)
        whole = rows >= height and columns >= width
        needed = fixed(pairs) + tile_bytes(rows, columns)
        shape = None if whole else (min(rows, height), min(columns, width))
        return LevelMemory(pairs, shape, max(needed, targets(rows, columns)))

    if tile is not None:
        for pairs in pair_counts:
            plan = planned(pairs, tile, tile if tile < width else width)
            if plan.needed <= budget:
                return plan
        raise OptionError(
            f"{what} in tiles of {tile} px needs about {planned(floor, tile, tile).needed / GB:.1f}"
            f" GB and --max-memory allows {budget / GB:.1f} GB: lower --tile or --size, or raise"
            " --max-memory"
        )
    for pairs in pair_counts:
        plan = planned(pairs, height, width)
        if plan.needed <= budget:
            return plan
    good = 2 * halo  # tiles with fewer own rows spend most of their work on halos
    for pairs in pair_counts:
        room = (budget - fixed(pairs)) / per_pixel  # input pixels of one tile
        rows = int(room / width) - 2 * halo
        if rows >= good:
            return planned(pairs, rows, width)
        side = int(math.sqrt(max(room, 0.0))) - 2 * halo
        if side >= good or (pairs == floor and side >= stride):
            return planned(pairs, side, side)
    raise OptionError(
        f"{what} needs about {planned(floor, stride, stride).needed / GB:.1f} GB even in the"
        f" smallest tiles and --max-memory allows {budget / GB:.1f} GB: lower --size or raise"
        " --max-memory"
    )


def memory_budget(max_memory: float | None) -> float:
    """The bytes a run may plan for: ``max_memory`` if given, else the smaller of
    :data:`DEFAULT_MAX_MEMORY` and :data:`AVAILABLE_SHARE` of the memory available now."""
    if max_memory is not None:
        return max_memory
    available = available_memory()
    if available is None:
        return DEFAULT_MAX_MEMORY
    return min(DEFAULT_MAX_MEMORY, AVAILABLE_SHARE * available)


def parse_size(text: str | float | int) -> float:
    """A memory size: bytes as a number, or a number with K, M, G or T (powers of 1024, an
    optional B or iB) — "8G", "512MiB", "6.5GB". Raises :class:`OptionError` otherwise."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        value = float(text)
    else:
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kKmMgGtT]?)(i?[bB])?\s*", str(text))
        if match is None:
            raise OptionError(f"a memory size must look like 8G, 512M or 6.5GB, not '{text}'")
        value = float(match.group(1)) * 1024 ** " kmgt".index(match.group(2).lower() or " ")
    if not math.isfinite(value) or value <= 0:
        raise OptionError(f"a memory size must be positive, not '{text}'")
    return value


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
