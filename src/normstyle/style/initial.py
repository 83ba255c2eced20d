"""The image the optimisation starts from.

The paper starts from white noise. Our default (``--init recolored``, not in the paper) starts
from the content image recoloured to the style images' colour mean and covariance — the colour
matching of Gatys et al. 2017 (§5.2) the other way round — so the optimisation begins with the
style's palette on the photo's structure. Measured at 256 px (Zen 4, 2026-12-07, 12 pairs,
default schedule, in-process; benchmarks/results/start-recolored-zen4.json): 2571 full-size
iterations in all instead of 2697 (−4.7%) and 1285 half-size ones instead of 1356; on the
held-out pair 201 instead of 226, on an ImageNet alp × seated-nude 190 instead of 271 (the
pair whose stop lay closest to "not finished": it now stops lower, 86916 against 87850); +2% to
+4% on four pairs whose style's colours are nearer the photo's. README, Speed.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from normstyle.io.decode import RGB, decoded
from normstyle.io.resize import cover
from normstyle.io.tensors import as_tensor
from normstyle.nets.preprocessing import Preprocessing
from normstyle.style.color import color_moments, mixture_moments, recolored

# What --init accepts besides an image path.
STARTS = ("recolored", "content", "noise")


def initial_image(
    init: str | RGB,
    content_rgb: torch.Tensor,
    prep: Preprocessing,
    seed: int,
    styles: Sequence[torch.Tensor] = (),
    blend: Sequence[float] = (),
    masks: Sequence[torch.Tensor] | None = None,
    style_masks: Sequence[torch.Tensor | None] | None = None,
) -> torch.Tensor:
    """The starting point in network input space: white noise (the paper), the content image,
    the content image recoloured to the style images' colours (``'recolored'``, see
    :func:`recolored_content`), or an image (a decoded array, see
    :func:`normstyle.io.decode.decoded`) fitted to the content's size without distortion: its
    largest centred crop of the content's aspect ratio, resized (an image of another shape
    loses its edges, never its proportions). RGB tensors are (1, 3, H, W) in [0, 1]."""
    if isinstance(init, str) and init == "noise":
        generator = torch.Generator().manual_seed(seed)
        rgb = torch.rand(content_rgb.shape, generator=generator)
    elif isinstance(init, str) and init == "content":
        rgb = content_rgb.clone()
    elif isinstance(init, str) and init == "recolored":
        rgb = recolored_content(content_rgb, styles, blend, masks, style_masks)
    else:
        height, width = content_rgb.shape[2:]
        rgb = as_tensor(cover(decoded(init), (width, height)))
    return prep.from_rgb(rgb)


def recolored_content(
    content: torch.Tensor,
    styles: Sequence[torch.Tensor],
    blend: Sequence[float],
    masks: Sequence[torch.Tensor] | None = None,
    style_masks: Sequence[torch.Tensor | None] | None = None,
) -> torch.Tensor:
    """``content`` recoloured to the colour mean and covariance of the style images: their
    pixels pooled in the proportions ``blend`` (each style image's own pixels weighted by its
    style mask, where given). With spatial control (``masks``, one per style image over the
    content, (1, 1, H, W) in [0, 1]) each region takes its own style's colours: the content
    recoloured to each style, blended by the masks (scaled down where they sum past 1); where
    no mask is white the content keeps its colours, as the output does there.
    No style images: the content itself."""
    if not styles:
        return content.clone()
    moments = [
        color_moments(style, _selecting(None if style_masks is None else style_masks[number]))
        for number, style in enumerate(styles)
    ]
    if masks is None:
        return recolored(content, *mixture_moments(moments, blend))
    coverage = torch.stack([m.double() for m in masks]).sum(0).clamp_min(1.0)
    start = content.double()
    for mask, (mean, cov) in zip(masks, moments):
        start = start + mask.double() / coverage * (
            recolored(content, mean, cov).double() - content
        )
    return start.to(content.dtype).clamp(0, 1)


def _selecting(weight: torch.Tensor | None) -> torch.Tensor | None:
    """A style mask as pixel weights, or None (every pixel) where resizing it to a coarse
    level has left it selecting nothing (the loss's guidance is checked on its own)."""
    if weight is None or float(weight.clamp_min(0).sum()) > 0:
        return weight
    return None
