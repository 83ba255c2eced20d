"""Which algorithm each frozen 3×3 conv of the style loop uses, chosen by measurement.

Winograd F(4×4, 3×3) (:mod:`normstyle.nets.winograd`) does a quarter of the multiplications of a
direct convolution, but spends memory traffic on its transforms and runs its products through
the BLAS, which may be slower than oneDNN's direct kernels. Which one wins depends on the CPU, the
layer's width and the size of its feature map (measured on a Zen 4 EPYC, see the rules below).
So each layer is timed at the run's own input size, forward and backward to the input as the
loop runs them, and switched to Winograd only where it is clearly faster (``measure``) — or, by
default, a fixed rule drawn from those measurements decides (``auto``: reproducible). Only fp32
networks are considered: in bf16 or fp16 the transforms would lose the precision the direct
kernels keep.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Sequence
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
# (timings vary from run to run; the two algorithms round differently).


@dataclass(frozen=True)
class WinogradRule:
    """Which convs ``auto`` switches to Winograd: wide enough, on a feature map neither too small
    (the transforms and tile padding dominate) nor too large (its transformed copies outgrow the
    caches and the direct kernels win), counted in positions (height × width) of one image."""

    min_in_channels: int
    min_out_channels: int
    min_positions: int
    max_positions: int

    def applies(self, conv: nn.Conv2d, positions: int) -> bool:
        """Whether ``conv``, on an input of ``positions`` positions, should use Winograd."""
        return (
            conv.in_channels >= self.min_in_channels
            and conv.out_channels >= self.min_out_channels
            and self.min_positions <= positions <= self.max_positions
        )


# Measured on a Zen 4 EPYC with `--convolution measure` at 128, 256, 512 and 1024 px (Winograd's
# speed over direct, forward + backward, each layer alone). Where the direct kernels use AVX-512,
# Winograd won only the 512-channel layers, on maps from 32² to 64² positions (1.1–1.2×); it lost
# at 16² (0.74–1.19×, 128 px) and at 128² (0.64–0.79×, conv4_x at 1024 px). The bounds sit
# between. Limited to AVX2 (oneDNN, ATen and MKL), every layer from conv2_1 won (1.1–2.6×) on maps
# from 16² to 128² positions and lost at 256² (conv2_x at 512 px, conv3_x at 1024 px: 0.32–0.69×)
# and at 8² (conv5_1 at 128 px: 0.72×); conv1_2, with 64 outputs, lost at every size.
# Layers timed alone overstate the gains: VGG-19's whole forward + backward to relu5_1 (median
# of 3–5) took, with AVX2, 294 ms by this rule against 296 ms by the earlier one (Winograd from
# 256 input channels, whatever the size) at 256 px, 1.20 s against 1.18 s at 512 px (direct:
# 0.42 s, 1.65 s), but at 1024 px 8.3 s against 10.2 s (direct 7.2 s); with AVX-512 in fp32,
# 0.85 s against 0.87 s at 512 px and 4.5 s against 6.1 s at 1024 px (direct 0.89 s, 4.7 s).
# The earlier rule's Winograd on large maps is what this one removes.
RULE_AVX512 = WinogradRule(512, 1, 512, 8192)
RULE_OTHER = WinogradRule(64, 128, 128, 32768)
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
        rule = RULE_AVX512 if direct_convolutions_use_avx512() else RULE_OTHER
        sizes = input_positions(chain[: deepest + 1], example.shape)
        for name, module in switchable:
            module.winograd = rule.applies(module, sizes[name])
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


def input_positions(chain: list[tuple[str, nn.Module]], shape: Sequence[int]) -> dict[str, int]:
    """The number of positions (height × width) of each layer's input in ``chain`` for a network
    input of ``shape`` (B, C, H, W), from the layers' shape formulas alone (convs and pooling;
    every other layer keeps its input's size). Nothing is run: even a tensor without data would
    make the first ReLU load torch's compiler, ~1 s of start-up."""
    size = (int(shape[-2]), int(shape[-1]))
    positions = {}
    for name, module in chain:
        positions[name] = size[0] * size[1]
        size = _output_size(module, size)
    return positions


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
