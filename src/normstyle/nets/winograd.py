"""Winograd F(2×2, 3×3), F(4×4, 3×3) and F(6×6, 3×3) convolution for frozen 3×3 layers (Lavin &
Gray, *Fast Algorithms for Convolutional Neural Networks*, CVPR 2016).

Each m×m block of outputs (m = 2, 4 or 6, the *tile*) is computed from the (m+2)×(m+2) block of
inputs around it as ``Y = Aᵀ [ (G W Gᵀ) ⊙ (Bᵀ d B) ] A``: (m+2)² multiplications per block and
channel pair instead of the 9m² of a direct convolution — 4 per output for F(2×2, 3×3), 2.25 for
F(4×4, 3×3), 1.78 for F(6×6, 3×3), against 9. With the weight transform ``G W Gᵀ`` computed once
(the network is frozen), a layer is an input transform, (m+2)² matrix products (one per position of
the block, each ``tiles × C_in`` by ``C_in × C_out``) and an output transform. The larger tile does
fewer products but pads small feature maps to whole tiles (a 32×27 map is 36×30 in 6×6 tiles) and
rounds a little more (tested against ``F.conv2d`` in float64); which tile, if any, a layer uses is
measured (``runtime/convolutions.py``).

The gradient with respect to the input of a 3×3, stride-1, padding-1 convolution is itself such a
convolution (with the weights flipped and their channel axes swapped), so the backward pass to
the pixels runs through the same algorithm with its own transformed weights. Weights and bias
get no gradient. Tensors are kept channels-last throughout (the layout the style loop uses).
"""

from __future__ import annotations

import functools
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

TILES = (2, 4, 6)  # output block sides m of F(m×m, 3×3); the input block is m + 2
# The tiles that run in bf16 under autocast (a larger tile there runs the direct conv): F(2×2)'s
# transforms have coefficients 0 and ±1 and add about as much error as a direct bf16 conv (on
# VGG-19, 2.1–3.2e-3 forward and 4.7–5.4e-3 backward to the input, relative to float64, against
# 1.8–2.0e-3 and 2.9e-3), where F(4×4)'s add ten times as much (measured 2026-12-08: README,
# Speed). The transforms run in float32 and round once.
BF16_TILES = (2,)

# The transform matrices (Bᵀ, G, Aᵀ) by tile, from the modified Toom–Cook construction with the
# interpolation points 0, ±1, ±2 (and ±1/2 for F(6, 3)) and ∞: Aᵀ[i, j] = p_jⁱ, G[j, k] =
# p_jᵏ / Π_{l≠j}(p_j − p_l), the ∞ point's column and row a unit vector; Bᵀ the unique matrix that
# makes Aᵀ[(G g) ⊙ (Bᵀ d)] the correlation of d with g (tested). F(2, 3) (points 0, ±1 and ∞) is
# Lavin & Gray's as printed, signs included; F(4, 3) is their eq. 9;
# F(6, 3) adds the points ±1/2, as NNPACK's F(6×6, 3×3) does (its input transform's 21/4, 17/4).
_MATRICES: dict[int, tuple[tuple[tuple[float, ...], ...], ...]] = {
    2: (
        ((1, 0, -1, 0), (0, 1, 1, 0), (0, -1, 1, 0), (0, 1, 0, -1)),
        ((1, 0, 0), (1 / 2, 1 / 2, 1 / 2), (1 / 2, -1 / 2, 1 / 2), (0, 0, 1)),
        ((1, 1, 1, 0), (0, 1, -1, -1)),
    ),
    4: (
        (
            (4, 0, -5, 0, 1, 0),
            (0, -4, -4, 1, 1, 0),
            (0, 4, -4, -1, 1, 0),
            (0, -2, -1, 2, 1, 0),
            (0, 2, -1, -2, 1, 0),
            (0, 4, 0, -5, 0, 1),
        ),
        (
            (1 / 4, 0, 0),
            (-1 / 6, -1 / 6, -1 / 6),
            (-1 / 6, 1 / 6, -1 / 6),
            (1 / 24, 1 / 12, 1 / 6),
            (1 / 24, -1 / 12, 1 / 6),
            (0, 0, 1),
        ),
        (
            (1, 1, 1, 1, 1, 0),
            (0, 1, -1, 2, -2, 0),
            (0, 1, 1, 4, 4, 0),
            (0, 1, -1, 8, -8, 1),
        ),
    ),
    6: (
        (
            (-1, 0, 21 / 4, 0, -21 / 4, 0, 1, 0),
            (0, 1, 1, -17 / 4, -17 / 4, 1, 1, 0),
            (0, -1, 1, 17 / 4, -17 / 4, -1, 1, 0),
            (0, 1 / 2, 1 / 4, -5 / 2, -5 / 4, 2, 1, 0),
            (0, -1 / 2, 1 / 4, 5 / 2, -5 / 4, -2, 1, 0),
            (0, 2, 4, -5 / 2, -5, 1 / 2, 1, 0),
            (0, -2, 4, 5 / 2, -5, -1 / 2, 1, 0),
            (0, -1, 0, 21 / 4, 0, -21 / 4, 0, 1),
        ),
        (
            (-1, 0, 0),
            (-2 / 9, -2 / 9, -2 / 9),
            (-2 / 9, 2 / 9, -2 / 9),
            (1 / 90, 1 / 45, 2 / 45),
            (1 / 90, -1 / 45, 2 / 45),
            (32 / 45, 16 / 45, 8 / 45),
            (32 / 45, -16 / 45, 8 / 45),
            (0, 0, 1),
        ),
        (
            (1, 1, 1, 1, 1, 1, 1, 0),
            (0, 1, -1, 2, -2, 1 / 2, -1 / 2, 0),
            (0, 1, 1, 4, 4, 1 / 4, 1 / 4, 0),
            (0, 1, -1, 8, -8, 1 / 8, -1 / 8, 0),
            (0, 1, 1, 16, 16, 1 / 16, 1 / 16, 0),
            (0, 1, -1, 32, -32, 1 / 32, -1 / 32, 1),
        ),
    ),
}


def winograd_matrices(
    tile: int, dtype: torch.dtype = torch.float64
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(Bᵀ, G, Aᵀ) of F(tile × tile, 3×3) as tensors."""
    if tile not in _MATRICES:
        raise ValueError(f"Winograd tile must be one of {TILES}, not {tile}")
    bt, g, at = _MATRICES[tile]
    return tuple(torch.tensor(m, dtype=dtype) for m in (bt, g, at))  # type: ignore[return-value]


def transform_weights(weight: torch.Tensor, tile: int = 4) -> torch.Tensor:
    """``G W Gᵀ`` for weights (C_out, C_in, 3, 3): ((tile+2)², C_in, C_out), in the weights' dtype.

    As one matrix product: vec(G W Gᵀ) = (G ⊗ G) vec(W) for every channel pair at once (a
    512 × 512 layer in ~10 ms, where per-pair 3×3 products took ~40). Each entry is a sum of
    nine products, so it is computed in the weights' own precision (at least float32).
    """
    dtype = torch.promote_types(weight.dtype, torch.float32)
    g = winograd_matrices(tile, torch.float64)[1]
    # Rows ordered (column b, row a) like the input transform's output, columns (l, k) like the
    # flattened transposed taps: kron(G, G)[b·n + a, l·3 + k] = G[b, l] G[a, k].
    kron = torch.kron(g, g).to(dtype=dtype, device=weight.device)
    out_channels, in_channels = weight.shape[:2]
    taps = weight.detach().to(dtype).permute(3, 2, 1, 0).reshape(9, -1)  # (l·3 + k, C_in·C_out)
    u = kron @ taps  # (b·n + a, C_in·C_out): already the layout the products want
    return u.view(-1, in_channels, out_channels).to(weight.dtype)


def backward_weights(weight: torch.Tensor) -> torch.Tensor:
    """The weights whose convolution is the gradient to the input: flipped, channels swapped."""
    return weight.detach().flip(2, 3).transpose(0, 1)


@functools.cache
def _transforms(
    tile: int, dtype: torch.dtype, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """Bᵀ and Aᵀ as tensors, made once per tile, dtype and device (they are on the hot path)."""
    bt, _, at = winograd_matrices(tile, dtype)
    return bt.to(device), at.to(device)


class FastTransforms(Protocol):
    """Another implementation of the input and output transforms (the compiled ones of
    :mod:`normstyle.runtime.native`); each returns None where it does not apply, and the
    PyTorch transforms below run instead."""

    def input_transform(self, x: torch.Tensor, tile: int) -> torch.Tensor | None: ...

    def output_transform(
        self,
        products: torch.Tensor,
        tile: int,
        size: tuple[int, int, int],
        bias: torch.Tensor | None,
    ) -> torch.Tensor | None: ...


def input_transform(x: torch.Tensor, tile: int) -> torch.Tensor:
    """``Bᵀ d B`` of every (tile+2)² block d of ``x`` (B, C, H, W) zero-padded by 1 and to whole
    tiles: ((tile+2)², tiles, C), rows ordered (column b, row a), tiles (image, row, column)."""
    block = tile + 2
    batch, channels, height, width = x.shape
    rows, cols = -(-height // tile), -(-width // tile)
    bt, _ = _transforms(tile, x.dtype, x.device)
    # (B, H, W, C) view; pad to whole blocks plus the 1-pixel border.
    nhwc = x.permute(0, 2, 3, 1)
    padded = F.pad(nhwc, (0, 0, 1, cols * tile + 1 - width, 1, rows * tile + 1 - height))
    # Separably: along the rows, then along the columns, each as a combination of strided
    # slices (no patches are ever copied out). Every contraction is over the leading axis, so
    # each is one matrix product without a transpose.
    span_r, span_c = tile * (rows - 1) + 1, tile * (cols - 1) + 1
    by_row = torch.stack([padded[:, k : k + span_r : tile] for k in range(block)])
    by_row = (bt @ by_row.view(block, -1)).view(block, batch, rows, -1, channels)  # (a, …)
    by_col = torch.stack([by_row[:, :, :, k : k + span_c : tile] for k in range(block)])
    tiles = batch * rows * cols
    return (bt @ by_col.view(block, -1)).view(block * block, tiles, channels)  # (b·a, …)


def output_transform(products: torch.Tensor, tile: int, size: tuple[int, int, int]) -> torch.Tensor:
    """``Aᵀ m A`` of the products ((tile+2)², tiles, C_out), cropped to ``size`` (batch, height,
    width): (B, C_out, H, W), channels-last strides."""
    block = tile + 2
    batch, height, width = size
    rows, cols = -(-height // tile), -(-width // tile)
    _, at = _transforms(tile, products.dtype, products.device)
    out_channels = products.shape[2]
    # Separably as well: over a (per column b), then over b.
    y = torch.matmul(at, products.view(block, block, -1))  # (b, i, tiles·O)
    y = (at @ y.view(block, -1)).view(tile, tile, batch, rows, cols, out_channels)  # (j, i)
    y = y.permute(2, 3, 1, 4, 0, 5).reshape(batch, rows * tile, cols * tile, out_channels)
    return y[:, :height, :width].permute(0, 3, 1, 2)


def winograd_conv3x3(
    x: torch.Tensor,
    transformed: torch.Tensor,
    bias: torch.Tensor | None = None,
    fast: FastTransforms | None = None,
) -> torch.Tensor:
    """A 3×3 convolution, stride 1, zero padding 1, of ``x`` (B, C_in, H, W) with weights
    already transformed by :func:`transform_weights` (whose shape gives the tile), plus
    ``bias``; channels-last (B, C_out, H, W). ``fast``: other transforms to try first.

    The products run in the transformed weights' dtype (``x`` must have it); the transforms in
    at least float32, rounded once to that dtype (bf16: see :data:`BF16_TILES`)."""
    tile = round(transformed.shape[0] ** 0.5) - 2
    batch, _, height, width = x.shape
    exact = torch.promote_types(x.dtype, torch.float32)
    v = None if fast is None else fast.input_transform(x, tile)
    if v is None:
        v = input_transform(x.to(exact), tile).to(transformed.dtype)
    products = torch.bmm(v, transformed)  # (block², tiles, C_out)
    size = (batch, height, width)
    y = None if fast is None else fast.output_transform(products, tile, size, bias)
    if y is None:
        y = output_transform(products.to(exact), tile, size)
        if bias is not None:
            y = y + bias.view(1, -1, 1, 1)
        y = y.to(products.dtype)
    return y


class _WinogradFunction(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        x: torch.Tensor,
        forward_weights: torch.Tensor,
        grad_weights: torch.Tensor,
        bias: torch.Tensor | None,
        fast: FastTransforms | None,
    ) -> torch.Tensor:
        ctx.grad_weights, ctx.fast = grad_weights, fast
        with torch.autocast(x.device.type, enabled=False):  # the dtypes are chosen already
            y = winograd_conv3x3(x, forward_weights, bias, fast)
        return y.contiguous(memory_format=torch.channels_last)

    @staticmethod
    def backward(  # type: ignore[override]
        ctx: Any, grad: torch.Tensor
    ) -> tuple[torch.Tensor | None, None, None, None, None]:
        grad_x = None
        if ctx.needs_input_grad[0]:
            grad = grad.to(ctx.grad_weights.dtype)
            with torch.autocast(grad.device.type, enabled=False):
                grad_x = winograd_conv3x3(grad, ctx.grad_weights, fast=ctx.fast)
            grad_x = grad_x.contiguous(memory_format=torch.channels_last)
        return grad_x, None, None, None, None


class WinogradConv2d(nn.Conv2d):
    """A frozen 3×3 convolution (stride 1, padding 1) that can run as Winograd F(m×m, 3×3).

    It is an ``nn.Conv2d`` (same parameters, same ``state_dict``) whose ``winograd`` switch picks
    the algorithm and ``tile`` the m (2, 4 or 6); off, it is the plain conv. On, its output equals
    the conv's up to rounding (relative error ~1e-5 in float32, tested against ``F.conv2d`` in
    float64) and only the input gets a gradient. Under bf16 autocast a tile of
    :data:`BF16_TILES` runs in bf16 and any other tile runs the plain conv. The transformed
    weights are computed once per tile and dtype, and again only if the weights change.
    """

    winograd: bool = False
    tile: int = 4
    fast: FastTransforms | None = None  # compiled transforms, where the runtime provides them
    # The weights' identity, and by dtype: (tile, forward, backward) transformed weights.
    _transformed: dict[Any, Any] | None = None

    @classmethod
    def from_conv(cls, conv: nn.Conv2d) -> WinogradConv2d:
        """A WinogradConv2d sharing ``conv``'s parameters (switched off)."""
        if not is_winograd_compatible(conv):
            raise ValueError("Winograd F(m×m, 3×3) needs a 3×3 conv, stride 1, padding 1")
        new = cls(
            conv.in_channels,
            conv.out_channels,
            kernel_size=3,
            padding=1,
            bias=conv.bias is not None,
            device="meta",
        )
        new.weight, new.bias = conv.weight, conv.bias  # shared, not copied
        new.train(conv.training)
        return new

    def _weights(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        weights = (self.weight._version, self.weight.data_ptr(), self.weight.dtype)
        cached = getattr(self, "_transformed", None)
        if cached is None or cached.get("weights") != weights:
            self._transformed = cached = {"weights": weights}
        # One tile per dtype is kept: fp32 F(6×6) weights of VGG-19 to conv5_1 take ~0.7 GB.
        if cached.get(dtype, (None,))[0] != self.tile:
            forward = transform_weights(self.weight, self.tile).to(dtype)
            backward = transform_weights(backward_weights(self.weight), self.tile).to(dtype)
            cached[dtype] = (self.tile, forward, backward)
        return cached[dtype][1], cached[dtype][2]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.winograd:
            return super().forward(x)
        dtype = self.weight.dtype
        if torch.is_autocast_enabled(x.device.type):
            dtype = torch.get_autocast_dtype(x.device.type)
            if dtype != torch.bfloat16 or self.tile not in BF16_TILES:
                return super().forward(x)
        forward, backward = self._weights(dtype)
        x = x.to(dtype)
        bias = None if self.bias is None else self.bias.detach()
        return _WinogradFunction.apply(x, forward, backward, bias, self.fast)

    def extra_repr(self) -> str:
        algorithm = f", Winograd F({self.tile}×{self.tile}, 3×3)" if self.winograd else ""
        return super().extra_repr() + algorithm


def is_winograd_compatible(module: nn.Module) -> bool:
    """Whether ``module`` is a plain 3×3, stride-1, padding-1, ungrouped, undilated conv."""
    return (
        isinstance(module, nn.Conv2d)
        and module.kernel_size == (3, 3)
        and module.stride == (1, 1)
        and module.padding == (1, 1)
        and module.dilation == (1, 1)
        and module.groups == 1
        and module.padding_mode == "zeros"
    )
