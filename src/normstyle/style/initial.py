"""The image the optimisation starts from."""

from __future__ import annotations

import torch

from normstyle.io.decode import RGB, decoded
from normstyle.io.resize import cover
from normstyle.io.tensors import as_tensor
from normstyle.nets.preprocessing import Preprocessing


def initial_image(
    init: str | RGB, content_rgb: torch.Tensor, prep: Preprocessing, seed: int
) -> torch.Tensor:
    """The starting point in network input space: white noise (the paper), the content image,
    or an image (a decoded array, see :func:`normstyle.io.decode.decoded`) fitted to the
    content's size without distortion: its largest centred crop of the content's aspect ratio,
    resized (an image of another shape loses its edges, never its proportions)."""
    if isinstance(init, str) and init == "noise":
        generator = torch.Generator().manual_seed(seed)
        rgb = torch.rand(content_rgb.shape, generator=generator)
    elif isinstance(init, str) and init == "content":
        rgb = content_rgb.clone()
    else:
        height, width = content_rgb.shape[2:]
        rgb = as_tensor(cover(decoded(init), (width, height)))
    return prep.from_rgb(rgb)
