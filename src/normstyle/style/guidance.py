"""Spatial guidance (Gatys, Ecker, Bethge, Hertzmann & Shechtman 2017, §4): a greyscale mask per
style says where on the output (and, optionally, where on its style image) that style applies.

A mask enters as any image source (a file, a PIL image, an array or a tensor, of any size), is
read as greyscale in [0, 1] and resized to the image it guides with the one resize function
(Lanczos) that every network input goes through. From there it is carried to each layer's
feature map **by the network's own pooling windows, averaged**: convolutions keep the map's size
(3×3, padding 1), every pooling layer averages the mask over the same window it pools the
features over (``avg_pool2d`` with that layer's kernel, stride, padding and rounding, whatever its
own kind). So each feature position's guidance value T is the fraction of its pooling cell that
lies in the region, and the guided Gram weighs it by T² (F_r = T ∘ F, as the paper writes it).

The paper describes two ways to propagate: down-sampling the guidance channel to each layer's
size, or eroding it so that only positions whose whole receptive field lies in the region count.
We down-sample, aligned to the network's pooling, because it keeps soft masks soft (a blend zone
stays a blend), keeps every layer's share of the image the same as the mask's, and never empties
a small region at the deep layers, whose receptive fields span a fifth of a 512 px image; the
price is that a region's style reaches across its border by up to a receptive field, which the
guided Gram of the neighbouring region then pulls back.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

from normstyle.errors import InputError, OptionError
from normstyle.io.decode import ImageSource, decoded
from normstyle.io.resize import resize
from normstyle.nets.chain import chain_of

# ITU-R BT.601 luma weights: a colour mask is read by its brightness.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)

Mask = np.ndarray  # float32 (H, W) in [0, 1]


def decoded_mask(source: ImageSource, role: str = "the mask") -> Mask:
    """Any image source as a greyscale mask, float32 (H, W) in [0, 1] (white: the region; a
    transparent pixel counts as black, so a white shape on a transparent background selects the
    shape). Tensors and arrays may also be (H, W) or (1, H, W). Raises :class:`InputError` for
    an unreadable file, values outside [0, 1], or a mask that selects no pixel at all."""
    if isinstance(source, torch.Tensor) and source.dim() in (2, 3) and source.shape[0] != 3:
        if source.dim() == 3 and source.shape[0] != 1:
            raise InputError(
                f"{role}: a mask tensor must be (H, W), (1, H, W) or (3, H, W), got"
                f" {tuple(source.shape)}"
            )
        plane = source.detach().float().cpu().reshape(source.shape[-2:])
        source = plane.expand(3, *plane.shape)
    elif isinstance(source, np.ndarray) and source.ndim == 3 and source.shape[0] == 1:
        source = source[0]
    elif isinstance(source, Image.Image) and source.mode == "1":
        source = source.convert("L")
    try:
        rgb = decoded(source, background=(0, 0, 0))
    except InputError as error:  # its message names the file, where there is one
        raise InputError(f"{role}: {error}") from None
    mask = np.ascontiguousarray(rgb @ _LUMA, dtype=np.float32).clip(0.0, 1.0)
    if float(mask.max()) <= 0.0:
        named = f"{role} {source}" if isinstance(source, (str, os.PathLike)) else role
        raise InputError(f"{named} is empty: it is black everywhere, so it selects no pixel")
    return mask


def resized_mask(mask: Mask, size: tuple[int, int]) -> torch.Tensor:
    """``mask`` resized to ``size`` = (width, height) as a tensor (1, 1, height, width)."""
    plane = resize(np.repeat(mask[..., None], 3, axis=2), size)[..., 0]
    return torch.from_numpy(np.ascontiguousarray(plane)).view(1, 1, *plane.shape)


def layer_position_weights(
    model: nn.Module, mask: torch.Tensor, layers: Collection[str]
) -> dict[str, torch.Tensor]:
    """Per named layer of ``model`` (a chain), the guidance T carried to its feature map by the
    network's pooling windows (see the module docstring), returned as the position weights
    t = T² of the guided Gram: (1, 1, h, w) each. ``mask``: (1, 1, H, W) over the input."""
    wanted = set(layers)
    out: dict[str, torch.Tensor] = {}
    guide = mask.float()
    for name, module in chain_of(model):
        if not wanted - out.keys():
            break
        if isinstance(module, (nn.MaxPool2d, nn.AvgPool2d)):
            guide = F.avg_pool2d(
                guide,
                module.kernel_size,
                module.stride or module.kernel_size,
                module.padding,
                ceil_mode=module.ceil_mode,
                count_include_pad=False,
            )
        elif isinstance(module, nn.Conv2d) and _changes_size(module):
            raise OptionError(
                f"masks need convolutions that keep the feature map's size; {name} does not"
            )
        if name in wanted:
            out[name] = guide.square()
    return out


def _changes_size(conv: nn.Conv2d) -> bool:
    if conv.padding == "same":
        return False
    padding = (0, 0) if conv.padding == "valid" else conv.padding
    return any(
        stride != 1 or 2 * pad != dilation * (kernel - 1)
        for kernel, stride, pad, dilation in zip(
            conv.kernel_size, conv.stride, padding, conv.dilation
        )
    )


def check_mask_count(masks: Sequence[object] | None, styles: int, option: str) -> None:
    """One mask per style image, or an :class:`OptionError` that says so."""
    if masks is not None and len(masks) != styles:
        raise OptionError(
            f"{len(masks)} {option} for {styles} style image{'s' if styles != 1 else ''}:"
            " give one mask per style image, in the same order"
        )
