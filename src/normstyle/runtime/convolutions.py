"""Which kernel each frozen 3×3 conv of the style loop runs, and in which precision the
network runs on the CPU, chosen by timing them on this machine.

Winograd F(4×4, 3×3) and F(6×6, 3×3) (:mod:`normstyle.nets.winograd`) do a quarter and a fifth
of the multiplications of a direct convolution, but spend memory traffic on their transforms and
run their products through the BLAS, which may be slower than oneDNN's direct kernels; bf16
halves the bytes but its instructions are not faster on every CPU that has them. Which wins
depends on the CPU (not only its instruction set), the layer's width and the size of its
feature map — measured, per layer:

- AMD EPYC Zen 4, AVX-512 (2026-12-02): Winograd won only the 512-channel layers on 32²–64²
  maps (1.1–1.2×); bf16 made an iteration 1.6–2.1× faster than fp32.
- The same CPU limited to AVX2: Winograd won every layer from conv2_1 on 16²–128² maps
  (1.1–2.6×) and lost at 256² (0.32–0.69×).
- Intel Xeon model 207, AVX-512-BF16 without AMX (2026-12-03): Winograd won from conv3_1 on
  (1.4–2.6× at 256 px), and a bf16 iteration took 1.9× the fp32 one (oneDNN's avx512_core_bf16
  kernels ran at 150 GFLOP/s against 230–265 in fp32).
- AMD EPYC Zen 4 (2026-12-07), Winograd in bf16: F(4×4) 1.4–2.4× faster per layer than
  oneDNN's bf16 direct conv, but with ten times its error (2.7e-2 against 2.9e-3, relative to
  float64), and default runs with it stopped unfinished (1.08–1.09 × the reference on tubingen ×
  starry_night; README, Speed). So F(4×4) and F(6×6) run in fp32 only.
- The same Zen 4 (2026-12-08), F(2×2) in bf16 with compiled transforms (float32 inside, one
  rounding): 1.2–1.9× faster than the bf16 direct conv from conv2_1 on (slower on conv1_2) at
  256 px, with about the direct conv's error (1.2–1.9× of it). So in bf16 each layer is timed
  direct against F(2×2) as well.

So each layer shape is timed once, forward and backward to the input as the loop runs them, and
the timings are remembered (:mod:`normstyle.runtime.tuning`): ``auto`` reads them (timing only
the shapes not seen yet), ``measure`` times afresh. A layer uses Winograd (with its faster tile)
only where it takes at most :data:`MARGIN` of the direct conv's time; the network runs in bf16
only where that makes the timed convs faster by :data:`BF16_MARGIN` (and the CPU computes bf16
natively at all). That choice is remembered per size class of the image (:func:`precision_key`),
not per shape: where bf16 wins, a new image of a size already seen times nothing.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from normstyle.nets.chain import chain_of
from normstyle.nets.winograd import WinogradConv2d, is_winograd_compatible
from normstyle.runtime import native
from normstyle.runtime.tuning import Timings, Tuning, cache_dir, conv_key, current

ConvolutionChoice = Literal["auto", "measure", "direct", "winograd"]
CONVOLUTION_CHOICES: tuple[str, ...] = ("auto", "measure", "direct", "winograd")

# Narrower layers are not timed for Winograd: the transforms dominate (conv1_1, 3 → 64 channels:
# 0.13× the direct conv's speed). Such a layer runs in fp32 in every precision (the first conv).
MIN_CHANNELS = 16
# Winograd is kept only where it takes at most this fraction of the direct conv's time: a
# narrower margin would flip on timing noise.
MARGIN = 0.9
# bf16 is chosen only where the timed convs take at most this fraction of their fp32 time (with
# each fp32 layer on its faster kernel), so that timing noise does not pick bf16 where it gains
# nothing (it also costs the casts around the fp32 first conv). 0.85 until 2026-12-07: on a Zen 4
# whose bf16 convs were timed at 0.82–0.90 of fp32's (one pass per kernel; three passes gave the
# same spread) it picked fp32 in about one fresh run in two, though whole runs took 0.79 (256 px,
# default schedule: 69 s against 87 s) and 0.83 (512 px, 25 iterations) of fp32's time there —
# the casts cost less than the margin assumed. At 0.95 the choice no longer flips on that CPU,
# and a CPU whose bf16 is slower (the Xeon above: 1.9×) is far from it.
BF16_MARGIN = 0.95
# Feature maps larger than this (positions of one image) are not timed and stay direct: the
# timing itself would take seconds and gigabytes, and Winograd lost on every map past 256²
# measured (0.3–0.7×).
MAX_TIMED_POSITIONS = 256 * 256
# Timed passes per kernel after one warm-up (which also makes oneDNN's primitives and Winograd's
# transformed weights); the fastest counts. One: a first run at 256 px times its shapes in
# ~1.5 s (AVX2) to ~2 s (with bf16 as well), all of it once per machine.
REPEATS = 1


# The fp32 Winograd kernels by tile (their names in the timings).
WINOGRAD_KERNELS = {4: "fp32-winograd", 6: "fp32-winograd6"}
FP32_KERNELS = ("fp32-direct", *WINOGRAD_KERNELS.values())
# The bf16 ones (nets/winograd.py's BF16_TILES).
BF16_WINOGRAD_KERNELS = {2: "bf16-winograd2"}
BF16_KERNELS = ("bf16-direct", *BF16_WINOGRAD_KERNELS.values())


@dataclass
class LayerTiming:
    """One conv's measured forward + backward time (seconds): direct, and Winograd with its
    faster tile; ``chosen`` is "direct" or "winograd"."""

    name: str
    direct: float
    winograd: float
    chosen: str
    tile: int = 4


def prepare_winograd(model: nn.Module) -> list[str]:
    """Make every Winograd-compatible conv of ``model`` (a chain: VGG, nn.Sequential of direct
    children) a switchable :class:`WinogradConv2d`, switched off, with this machine's compiled
    transforms where they can be built (:mod:`normstyle.runtime.native`); returns their names."""
    fast = native.winograd_transforms(cache_dir())
    names = []
    for name, module in chain_of(model):
        if is_winograd_compatible(module) and "." not in name:
            if not isinstance(module, WinogradConv2d):
                module = WinogradConv2d.from_conv(module)
                setattr(model, name, module)
            module.fast = fast
            names.append(name)
    return names


def choose_convolutions(
    model: nn.Module,
    example: torch.Tensor,
    wanted: Collection[str],
    choice: ConvolutionChoice = "auto",
    clock: Callable[[], float] = time.perf_counter,
    tuning: Tuning | None = None,
) -> list[LayerTiming]:
    """Set each switchable conv of ``model`` up to the deepest ``wanted`` layer to Winograd or
    direct for inputs shaped like ``example`` (the network input, in its dtype and layout).

    ``choice`` "direct" or "winograd" sets them all; "auto" chooses by this machine's remembered
    timings (timing the shapes it has none for) and "measure" times every shape afresh; both
    return the timings they used. Both apply to fp32 (tiles 4 and 6) and bf16 (tile 2) on the
    CPU; elsewhere every conv stays direct. ``tuning``: where timings are remembered (default:
    this machine's cache).
    """
    switchable = _switchable(model, wanted)
    direct_kernel, tiles = _kernels_for(example.dtype)
    if choice in ("direct", "winograd"):
        for _, module, _ in switchable:
            module.winograd, module.tile = choice == "winograd", min(tiles or WINOGRAD_KERNELS)
        return []
    for _, module, _ in switchable:
        module.winograd = False
    if example.device.type != "cpu" or not tiles:
        return []
    timed = [(n, m, size) for n, m, size in _sizes(model, switchable, example) if _timed(m, size)]
    kernels = [direct_kernel, *tiles.values()]
    timings = kernel_timings(timed, kernels, choice == "measure", clock, tuning)
    chosen = []
    for name, module, _ in timed:
        direct = timings[name][direct_kernel]
        tile = min(tiles, key=lambda t: timings[name][tiles[t]])
        winograd = timings[name][tiles[tile]]
        module.winograd, module.tile = winograd <= MARGIN * direct, tile
        algorithm = "winograd" if module.winograd else "direct"
        chosen.append(LayerTiming(name, direct, winograd, algorithm, tile))
    return chosen


def _kernels_for(dtype: torch.dtype) -> tuple[str, dict[int, str]]:
    """The direct kernel's name and the Winograd kernels by tile for a network dtype (none for
    a dtype whose convs are not timed)."""
    if dtype == torch.float32:
        return "fp32-direct", WINOGRAD_KERNELS
    if dtype == torch.bfloat16:
        return "bf16-direct", BF16_WINOGRAD_KERNELS
    return "", {}


def fastest_precision(
    model: nn.Module,
    example: torch.Tensor,
    wanted: Collection[str],
    convolution: ConvolutionChoice = "auto",
    clock: Callable[[], float] = time.perf_counter,
    tuning: Tuning | None = None,
) -> Literal["fp32", "bf16"]:
    """fp32 or bf16, whichever runs ``model``'s convs up to the deepest ``wanted`` layer faster
    on inputs shaped like ``example`` on this CPU: the sum over the timed layers of each
    precision's kernel as :func:`choose_convolutions` would choose it among those
    ``convolution`` allows. Call it only where the CPU computes bf16 natively (see
    :mod:`normstyle.runtime.precision`)."""
    example = example.float()
    sizes = _sizes(model, _switchable(model, wanted), example)
    timed = [(n, m, size) for n, m, size in sizes if _timed(m, size)]
    if not timed:
        return "bf16"
    fp32_kernels = {"direct": ["fp32-direct"], "winograd": [WINOGRAD_KERNELS[4]]}.get(
        convolution, list(FP32_KERNELS)
    )
    bf16_kernels = {"direct": ["bf16-direct"], "winograd": ["bf16-winograd2"]}.get(
        convolution, list(BF16_KERNELS)
    )
    tuning = tuning if tuning is not None else current()
    pixels = example.shape[-2] * example.shape[-1]
    key = precision_key(timed, [*fp32_kernels, *bf16_kernels], pixels)
    sums = {} if convolution == "measure" else tuning.get(key)
    if not {"fp32", "bf16"} <= sums.keys():
        kernels = [*fp32_kernels, *bf16_kernels]
        fresh = convolution == "measure" or any(
            not set(kernels) <= tuning.get(conv_key(m, *size)).keys() for _, m, size in timed
        )
        timings = kernel_timings(timed, kernels, convolution == "measure", clock, tuning)
        sums = _precision_sums(timings, fp32_kernels, bf16_kernels)
        if fresh and sums["bf16"] > BF16_MARGIN * sums["fp32"]:
            # One timed pass per kernel can be hit by a stall, and fp32 would then be remembered
            # for the whole size class: on a Zen 4 whose bf16 convs timed at 0.63–0.78 of fp32's
            # in six fresh processes, one fresh run in four still took fp32 (2026-12-07; README,
            # Speed). So before fp32 is kept, every kernel is timed once more and keeps its faster
            # pass (a CPU where bf16 is slower, like the Xeon above, pays this once per class).
            again = kernel_timings(timed, kernels, True, clock, tuning)
            for name, module, (height, width) in timed:
                timings[name] = {k: min(timings[name][k], again[name][k]) for k in kernels}
                tuning.put(conv_key(module, height, width), timings[name])
            sums = _precision_sums(timings, fp32_kernels, bf16_kernels)
        tuning.put(key, sums)
        tuning.save()
    return "bf16" if sums["bf16"] <= BF16_MARGIN * sums["fp32"] else "fp32"


def _precision_sums(
    timings: dict[str, Timings], fp32_kernels: Sequence[str], bf16_kernels: Sequence[str]
) -> Timings:
    """The timed convs' total per precision, each layer on the kernel it would run: a Winograd
    kernel where it takes at most :data:`MARGIN` of the direct one's time (or is the only one
    allowed), else the direct one."""

    def chosen(times: Timings, kernels: Sequence[str]) -> float:
        direct = [times[k] for k in kernels if k.endswith("-direct")]
        fastest = min(times[k] for k in kernels)
        if not direct or fastest <= MARGIN * direct[0]:
            return fastest
        return direct[0]

    return {
        "fp32": sum(chosen(t, fp32_kernels) for t in timings.values()),
        "bf16": sum(chosen(t, bf16_kernels) for t in timings.values()),
    }


def precision_key(
    timed: Sequence[tuple[str, WinogradConv2d, tuple[int, int]]],
    kernels: Sequence[str],
    pixels: int,
) -> str:
    """Where :func:`fastest_precision` remembers its two sums: the timed convs' widths, the
    kernels allowed and the network input's size class (pixels within a factor of 4: class 8
    for 256 px images from square to 2:1, 9 for 512 px squares), not its exact shape. Whether
    bf16 beats fp32 is the CPU's property more than the image's (Zen 4, 2026-12-07: bf16 timed
    at 0.83–0.86 of fp32 at 256×192, 0.82–0.90 at 384×512), so a new image of a size class
    already timed is not timed again: on a Zen 4, 1.7 s less per 256 px process (README, Speed)."""
    widths = ",".join(f"{m.in_channels}-{m.out_channels}" for _, m, _ in timed)
    layers = hashlib.sha256(f"{widths} {' '.join(kernels)}".encode()).hexdigest()[:12]
    return f"precision {layers} class {round(math.log2(max(pixels, 1)) / 2)}"


def kernel_timings(
    layers: Sequence[tuple[str, WinogradConv2d, tuple[int, int]]],
    kernels: Sequence[str],
    refresh: bool = False,
    clock: Callable[[], float] = time.perf_counter,
    tuning: Tuning | None = None,
) -> dict[str, Timings]:
    """Each layer's time per kernel (``layers``: name, conv, input height and width), from the
    remembered timings where they exist (unless ``refresh``), else timed now and remembered.
    Layers of one shape are timed once."""
    tuning = tuning if tuning is not None else current()
    out: dict[str, Timings] = {}
    measured: set[str] = set()  # shapes timed by this call
    for name, module, (height, width) in layers:
        key = conv_key(module, height, width)
        known = {} if refresh and key not in measured else tuning.get(key)
        missing = [kernel for kernel in kernels if kernel not in known]
        if missing:
            known |= _time_kernels(module, height, width, missing, clock)
            tuning.put(key, known)
            measured.add(key)
        out[name] = known
    if measured:
        tuning.save()
    return out


def _switchable(model: nn.Module, wanted: Collection[str]) -> list[tuple[str, WinogradConv2d, int]]:
    """The switchable convs up to the deepest ``wanted`` layer, with their chain index."""
    chain = chain_of(model)
    order = [name for name, _ in chain]
    deepest = max((order.index(name) for name in wanted), default=-1)
    return [
        (name, module, index)
        for index, (name, module) in enumerate(chain[: deepest + 1])
        if isinstance(module, WinogradConv2d)
    ]


def _sizes(
    model: nn.Module, switchable: list[tuple[str, WinogradConv2d, int]], example: torch.Tensor
) -> list[tuple[str, WinogradConv2d, tuple[int, int]]]:
    """Each switchable conv with the height and width of its input for ``example``."""
    if not switchable:
        return []
    chain = chain_of(model)
    sizes = input_sizes(chain[: switchable[-1][2] + 1], example.shape)
    return [(name, module, sizes[name]) for name, module, _ in switchable]


def _timed(module: WinogradConv2d, size: tuple[int, int]) -> bool:
    return module.in_channels >= MIN_CHANNELS and size[0] * size[1] <= MAX_TIMED_POSITIONS


def input_sizes(
    chain: list[tuple[str, nn.Module]], shape: Sequence[int]
) -> dict[str, tuple[int, int]]:
    """The height and width of each layer's input in ``chain`` for a network input of ``shape``
    (B, C, H, W), from the layers' shape formulas alone (convs and pooling; every other layer
    keeps its input's size). Nothing is run: even a tensor without data would make the first
    ReLU load torch's compiler, ~1 s of start-up."""
    size = (int(shape[-2]), int(shape[-1]))
    sizes = {}
    for name, module in chain:
        sizes[name] = size
        size = _output_size(module, size)
    return sizes


def _output_size(module: nn.Module, size: tuple[int, int]) -> tuple[int, int]:
    """The spatial size of ``module``'s output for an input of ``size`` (height, width)."""
    if isinstance(module, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
        target = _pair(module.output_size)
        return (target[0] or size[0], target[1] or size[1])
    if isinstance(module, nn.Conv2d):
        if module.padding == "same":
            return size
        padding = (0, 0) if module.padding == "valid" else module.padding
        kernel, stride, dilation, ceil = module.kernel_size, module.stride, module.dilation, False
    elif isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
        kernel, padding, ceil = _pair(module.kernel_size), _pair(module.padding), module.ceil_mode
        stride = _pair(module.stride or module.kernel_size)
        dilation = _pair(getattr(module, "dilation", 1))
    else:
        return size
    out = []
    for axis in (0, 1):
        reach = dilation[axis] * (kernel[axis] - 1) + 1
        span = size[axis] + 2 * int(padding[axis]) - reach
        count = -(-span // stride[axis]) if ceil else span // stride[axis]
        if ceil and count * stride[axis] >= size[axis] + int(padding[axis]):
            count -= 1  # torch's rule: the last window must start inside the input or padding
        out.append(count + 1)
    return (out[0], out[1])


def _pair(value: object) -> tuple:
    return tuple(value) if isinstance(value, (tuple, list)) else (value, value)


def _time_kernels(
    module: WinogradConv2d,
    height: int,
    width: int,
    kernels: Sequence[str],
    clock: Callable[[], float],
) -> Timings:
    """Time ``module`` on a (1, C_in, height, width) channels-last input with each kernel: one
    forward + backward-to-input pass as the loop runs it, the fastest of :data:`REPEATS` after
    a warm-up. The module's Winograd switch and tile are left as they were."""
    was = module.winograd, module.tile
    x = torch.zeros(1, module.in_channels, height, width, device=module.weight.device)
    x = x.contiguous(memory_format=torch.channels_last)
    out: Timings = {}
    try:
        for kernel in kernels:
            tiles = [
                tile
                for tile, name in (*WINOGRAD_KERNELS.items(), *BF16_WINOGRAD_KERNELS.items())
                if name == kernel
            ]
            module.winograd = bool(tiles)
            module.tile = tiles[0] if tiles else module.tile
            bf16 = kernel.startswith("bf16")
            leaf = (x.bfloat16() if bf16 else x).requires_grad_(True)
            best = float("inf")
            with torch.enable_grad(), torch.autocast("cpu", torch.bfloat16, enabled=bf16):
                for repeat in range(REPEATS + 1):
                    leaf.grad = None
                    start = clock()
                    y = module(leaf)
                    y.backward(torch.ones_like(y))
                    seconds = clock() - start
                    if repeat:  # the first pass warms up
                        best = min(best, seconds)
            out[kernel] = max(best, 1e-9)
    finally:
        module.winograd, module.tile = was
    return out
