"""Network inputs from a folder of images: the folder loader's RGB images in a weight source's
preprocessing, channels-last, each no larger than one forward pass can take in memory."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import torch

from normstyle.io.decode import DEFAULT_MAX_PIXELS
from normstyle.io.folders import folder_images
from normstyle.nets.preprocessing import Preprocessing
from normstyle.runtime.memory import BYTES_PER_TARGET_PIXEL, max_forward_pixels


def network_inputs(
    files: Sequence[Path],
    prep: Preprocessing,
    short_side: int,
    skipped: list[str] | None = None,
    bytes_per_pixel: float = BYTES_PER_TARGET_PIXEL,
) -> Iterator[torch.Tensor]:
    """Each of ``files`` as a (1, 3, H, W) network input with short side ``short_side``.

    ``bytes_per_pixel``: what one forward pass of the caller keeps per pixel; an image larger
    than the memory available allows is skipped (named in ``skipped``). A ``short_side`` no
    image could have is refused at once (:class:`~normstyle.errors.OptionError`).
    """
    memory_limit = max_forward_pixels(bytes_per_pixel)
    max_pixels = (
        DEFAULT_MAX_PIXELS if memory_limit is None else min(DEFAULT_MAX_PIXELS, memory_limit)
    )
    images = folder_images(files, short_side, skipped, max_pixels)
    return (prep.from_rgb(rgb).contiguous(memory_format=torch.channels_last) for rgb in images)
