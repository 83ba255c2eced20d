"""Horizontal bands of an image that a network can process one at a time, exactly.

A feature at a layer depends on the input rows within its receptive field only, so an image can go
through the network in bands of rows, each with a *halo* of extra rows above and below that covers
the receptive field of the deepest layer used: the features of a band's own rows are then the
features of the whole image, bit for bit up to the order of the sums. Two things make that exact
rather than approximate:

- every band boundary (and the halo) is a multiple of the network's total pooling stride, so each
  band's pooling cells are the whole image's cells;
- a band's zero padding at its cut edges corrupts only the rows within the receptive field's reach
  of the cut, which are the halo's, never the band's own.

:func:`chain_geometry` reads the stride and the reach from the network's own layers (3×3 and other
"same" convolutions, pooling, element-wise layers); :func:`band_layout` cuts an image into bands;
:meth:`BandLayout.owned` says which rows of a layer's feature map a band owns.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass

from torch import nn

from normstyle.errors import OptionError
from normstyle.nets.chain import chain_of

# Layers that act on each position (and channel) alone: they change neither stride nor reach.
_POINTWISE = (nn.ReLU, nn.BatchNorm2d, nn.Identity, nn.Dropout, nn.LeakyReLU)


@dataclass(frozen=True)
class Geometry:
    """What banding a network needs to know: the total pooling ``stride`` up to the deepest layer
    used, the ``halo`` (rows, a multiple of the stride) that covers its receptive field, and each
    named layer's cumulative stride."""

    stride: int
    halo: int
    strides: dict[str, int]


def chain_geometry(model: nn.Module, layers: Collection[str]) -> Geometry:
    """The :class:`Geometry` of ``model`` (a chain) up to the deepest of ``layers``. Raises
    :class:`OptionError` for a layer that banding cannot reproduce exactly (a strided or
    padding-changing convolution, overlapping or padded pooling, anything not element-wise)."""
    wanted = set(layers)
    strides: dict[str, int] = {}
    jump, above, below = 1, 0, 0  # cumulative stride; receptive reach above and below a row
    for name, module in chain_of(model):
        if not wanted - strides.keys():
            break
        if isinstance(module, nn.Conv2d):
            kernel, dilation = module.kernel_size[0], module.dilation[0]
            padding = module.padding if isinstance(module.padding, str) else module.padding[0]
            if module.stride[0] != 1 or (
                padding != "same" and 2 * padding != dilation * (kernel - 1)
            ):
                raise OptionError(f"banded evaluation needs 'same' convolutions; {name} is not")
            reach = dilation * (kernel - 1) // 2
            above, below = above + reach * jump, below + reach * jump
        elif isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
            kernel = _first(module.kernel_size)
            stride = _first(module.stride or module.kernel_size)
            if kernel != stride or _first(module.padding) != 0:
                raise OptionError(
                    f"banded evaluation needs non-overlapping, unpadded pooling; {name} is not"
                )
            below += (kernel - 1) * jump  # a cell reaches down from its first row
            jump *= stride
        elif not isinstance(module, _POINTWISE):
            raise OptionError(
                f"banded evaluation cannot go through {name} ({type(module).__name__})"
            )
        if name in wanted:
            strides[name] = jump
    halo = math.ceil(max(above, below) / jump) * jump
    return Geometry(stride=jump, halo=halo, strides=strides)


def network_geometry(arch: str, pooling: str, layers: Collection[str]) -> Geometry:
    """The :class:`Geometry` of our VGG of ``arch`` up to the deepest of ``layers``, without
    weights (built on the meta device: no memory, no time)."""
    import torch

    from normstyle.nets.vgg import VGG

    with torch.device("meta"):
        model = VGG(arch, pooling=pooling)  # type: ignore[arg-type]
    return chain_geometry(model, layers)


def feature_sizes(
    model: nn.Module, layers: Collection[str], height: int, width: int
) -> dict[str, tuple[int, int]]:
    """(rows, columns) of each of ``layers``' feature maps for a height × width input, from the
    layers' shape formulas (nothing is run)."""
    wanted = set(layers)
    sizes: dict[str, tuple[int, int]] = {}
    for name, module in chain_of(model):
        if not wanted - sizes.keys():
            break
        if isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
            kernel = _first(module.kernel_size)
            stride = _first(module.stride or module.kernel_size)
            rounding = math.ceil if module.ceil_mode else math.floor
            height, width = (rounding((side - kernel) / stride) + 1 for side in (height, width))
        if name in wanted:
            sizes[name] = (height, width)
    return sizes


def _first(value: object) -> int:
    return int(value[0] if isinstance(value, (tuple, list)) else value)  # type: ignore[index]


@dataclass(frozen=True)
class Band:
    """Rows ``[start, stop)`` and columns ``[left, right)`` of the image are this tile's own; the
    network is given rows ``[input_start, input_stop)`` and columns ``[input_left, input_right)``
    (its own plus the halo, clipped to the image). A band of rows is a tile as wide as the
    image."""

    start: int
    stop: int
    input_start: int
    input_stop: int
    left: int = 0
    right: int = 0
    input_left: int = 0
    input_right: int = 0

    @property
    def input_pixels(self) -> int:
        return (self.input_stop - self.input_start) * (self.input_right - self.input_left)


@dataclass(frozen=True)
class BandLayout:
    """An image of ``height`` × ``width`` cut into ``bands`` (tiles) for a network of this
    geometry."""

    height: int
    width: int
    geometry: Geometry
    bands: tuple[Band, ...]

    def owned(
        self, band: Band, layer: str, size: tuple[int, int]
    ) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
        """For ``layer`` (whose feature map over the whole image is ``size`` = (rows, columns)):
        the (rows, columns) of the tile's feature map that it owns, and where they are in the
        whole map."""
        stride = self.geometry.strides[layer]
        rows = _own(band.start, band.stop, band.input_start, self.height, size[0], stride)
        columns = _own(band.left, band.right, band.input_left, self.width, size[1], stride)
        return (rows[0], columns[0]), (rows[1], columns[1])

    @property
    def tile(self) -> tuple[int, int]:
        """The largest tile's own (rows, columns)."""
        return (
            max(band.stop - band.start for band in self.bands),
            max(band.right - band.left for band in self.bands),
        )

    @property
    def largest_input(self) -> tuple[int, int]:
        """The most (rows, columns) the network is given at once."""
        return (
            max(band.input_stop - band.input_start for band in self.bands),
            max(band.input_right - band.input_left for band in self.bands),
        )

    def describe(self) -> str:
        """ "12 bands of 256 rows" or "20 tiles of 512×512 px"."""
        rows, columns = self.tile
        if columns == self.width:
            return f"{len(self.bands)} bands of {rows} rows"
        return f"{len(self.bands)} tiles of {columns}×{rows} px"


def _own(
    start: int, stop: int, input_start: int, extent: int, cells: int, stride: int
) -> tuple[slice, slice]:
    first = start // stride
    last = cells if stop == extent else stop // stride
    offset = input_start // stride
    return slice(first - offset, last - offset), slice(first, last)


def _cuts(extent: int, own: int, stride: int) -> list[tuple[int, int]]:
    """``extent`` cut into pieces of about ``own`` (multiples of the stride but the last, which
    takes what remains), spread evenly."""
    size = max(stride, own // stride * stride)
    count = max(1, math.ceil(extent / size))
    per_piece = max(stride, math.ceil(extent / count / stride) * stride)
    cuts, start = [], 0
    while start < extent:
        stop = start + per_piece
        if stop >= extent or extent - stop < stride:
            stop = extent
        cuts.append((start, stop))
        start = stop
    return cuts


def band_layout(
    height: int, rows: int, geometry: Geometry, width: int | None = None, columns: int | None = None
) -> BandLayout:
    """An image of ``height`` × ``width`` rows and columns cut into tiles of about ``rows`` ×
    ``columns`` own pixels (rounded down to the stride, at least one stride each; the last in
    each direction takes what remains). Without ``columns`` (or ``width``), bands as wide as
    the image."""
    halo = geometry.halo
    width = width if width is not None else 1
    columns = columns if columns is not None and columns < width else width
    bands = []
    for start, stop in _cuts(height, rows, geometry.stride):
        for left, right in (
            _cuts(width, columns, geometry.stride) if columns < width else [(0, width)]
        ):
            bands.append(
                Band(
                    start,
                    stop,
                    max(0, start - halo),
                    min(height, stop + halo),
                    left,
                    right,
                    max(0, left - halo),
                    min(width, right + halo),
                )
            )
    return BandLayout(height, width, geometry, tuple(bands))
