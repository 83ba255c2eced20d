"""Which algorithm each frozen 3×3 conv of the style loop uses, chosen by measurement.

Winograd F(4×4, 3×3) (:mod:`normstyle.nets.winograd`) does a quarter of the multiplications of a
direct convolution, but spends memory traffic on its transforms and runs its products through
the BLAS, which may be slower than oneDNN's direct kernels. Which one wins depends on the CPU, the
layer's width and the image size (measured on a Zen 4 EPYC: with AVX-512, Winograd won only the
512-channel layers, by 1.1–1.2×; with oneDNN limited to AVX2, 1.3–2.4× on every layer from
128 channels up and lost on the 64-channel ones). So each layer is timed at the run's own input
size, forward and backward to the input as the loop runs them, and switched to Winograd only
where it is clearly faster (``measure``) — or, by default, a fixed rule drawn from those
measurements decides (``auto``: reproducible). Only fp32 networks are considered: in bf16 or
fp16 the transforms would lose the precision the direct kernels keep.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from normstyle.nets.chain import chain_of
from normstyle.nets.winograd import WinogradConv2d, is_winograd_compatible
from normstyle.runtime.precision import direct_convolutions_use_avx512

ConvolutionChoice = Literal["auto", "measure", "direct", "winograd"]
CONVOLUTION_CHOICES: tuple[str, ...] = ("auto", "measure", "direct", "winograd")
# "auto": a fixed rule from those measurements, so that a seed reproduces an image bit for bit
# (timings vary from run to run; the two algorithms round differently). Winograd for layers
# with at least this many input channels: where oneDNN's direct kernels use AVX-512, only the
# 512-channel layers won (1.1–1.2×); limited to AVX2, every layer from 256 channels won
# (1.5–2.4×), and 128-channel layers only at small sizes.
MIN_CHANNELS_AVX512 = 512
MIN_CHANNELS_OTHER = 256
# Narrower layers are not timed: the transforms dominate (conv1_1, 3 → 64 channels: 0.13× the
# direct conv's speed).
MIN_CHANNELS = 16
# Winograd is kept only where it takes at most this fraction of the direct conv's time: a
# narrower margin would flip on timing noise.
MARGIN = 0.9


@dataclass
class LayerTiming:
    """One conv's measured forward + backward time (seconds) with each algorithm."""

    name: str
    direct: float
    winograd: float
    chosen: str


def prepare_winograd(model: nn.Module) -> list[str]:
    """Make every Winograd-compatible conv of ``model`` (a chain: VGG, nn.Sequential of direct
    children) a switchable :class:`WinogradConv2d`, switched off; returns their names."""
    names = []
    for name, module in chain_of(model):
        if is_winograd_compatible(module) and "." not in name:
            if not isinstance(module, WinogradConv2d):
                setattr(model, name, WinogradConv2d.from_conv(module))
            names.append(name)
    return names


def choose_convolutions(
    model: nn.Module,
    example: torch.Tensor,
    wanted: Collection[str],
    choice: ConvolutionChoice = "auto",
    clock: Callable[[], float] = time.perf_counter,
) -> list[LayerTiming]:
    """Set each switchable conv of ``model`` up to the deepest ``wanted`` layer to Winograd or
    direct for inputs shaped like ``example`` (the network input, in its dtype and layout).

    ``choice`` "direct" or "winograd" sets them all; "auto" applies the fixed rule above and
    "measure" times both algorithms on every layer at this size (fast wherever it runs, but
    not bit-reproducible from run to run) and returns the timings. Both only for fp32 on the
    CPU; elsewhere all stay direct.
    """
    chain = chain_of(model)
    order = [name for name, _ in chain]
    deepest = max((order.index(name) for name in wanted), default=-1)
    switchable = [(n, m) for n, m in chain[: deepest + 1] if isinstance(m, WinogradConv2d)]
    if choice in ("direct", "winograd"):
        for _, module in switchable:
            module.winograd = choice == "winograd"
        return []
    for _, module in switchable:
        module.winograd = False
    if example.device.type != "cpu" or example.dtype != torch.float32:
        return []
    if choice == "auto":
        least = MIN_CHANNELS_AVX512 if direct_convolutions_use_avx512() else MIN_CHANNELS_OTHER
        for _, module in switchable:
            module.winograd = module.in_channels >= least
        return []
    timings = []
    x = example.detach()
    with torch.no_grad():
        for name, module in chain[: deepest + 1]:
            if isinstance(module, WinogradConv2d) and module.in_channels >= MIN_CHANNELS:
                direct = _time(module, x, False, clock)
                winograd = _time(module, x, True, clock)
                keep = winograd <= MARGIN * direct
                module.winograd = keep
                timings.append(
                    LayerTiming(name, direct, winograd, "winograd" if keep else "direct")
                )
            x = module(x)
    return timings


def _time(
    module: WinogradConv2d, x: torch.Tensor, winograd: bool, clock: Callable[[], float]
) -> float:
    """One forward + backward pass, timed after one to warm up (allocations, weight transforms)."""
    module.winograd = winograd
    leaf = x.detach().requires_grad_(True)
    with torch.enable_grad():
        for _ in range(2):
            leaf.grad = None
            start = clock()
            out = module(leaf)
            out.backward(torch.ones_like(out))
            seconds = clock() - start
    return seconds
