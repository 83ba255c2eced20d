"""How a network wants its input: channel order, value range, mean and standard deviation.

Every weight source carries one :class:`Preprocessing`, so nothing else needs to know whether a net
wants BGR 0–255 (Caffe) or normalised RGB 0–1 (torchvision). Public tensors are RGB in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from PIL import Image

from normstyle.io.tensors import image_to_rgb, rgb_to_image


@dataclass(frozen=True)
class Preprocessing:
    """Maps RGB images in [0, 1] to a network's input space and back."""

    name: str
    channel_order: Literal["RGB", "BGR"]
    scale: float  # the network's value for full intensity: 255 (Caffe) or 1 (torchvision)
    mean: tuple[float, float, float]  # subtracted, per input channel (network order, scaled units)
    std: tuple[float, float, float]  # divided by, after the mean

    def _stats(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean = torch.tensor(self.mean, dtype=like.dtype, device=like.device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, dtype=like.dtype, device=like.device).view(1, 3, 1, 1)
        return mean, std

    def _reorder(self, x: torch.Tensor) -> torch.Tensor:
        # RGB ↔ BGR is its own inverse.
        return x.flip(1) if self.channel_order == "BGR" else x

    def from_rgb(self, rgb: torch.Tensor) -> torch.Tensor:
        """RGB in [0, 1], shape (B, 3, H, W) → network input."""
        mean, std = self._stats(rgb)
        return (self._reorder(rgb) * self.scale - mean) / std

    def to_rgb(self, x: torch.Tensor) -> torch.Tensor:
        """Network input → RGB in [0, 1] (not clamped)."""
        mean, std = self._stats(x)
        return self._reorder((x * std + mean) / self.scale)

    @property
    def pixel_unit(self) -> float:
        """One intensity level (1/255) in network units, averaged over channels."""
        return self.scale / 255.0 / float(np.mean(self.std))

    def image_to_tensor(self, image: Image.Image) -> torch.Tensor:
        """An RGB PIL image → network input of shape (1, 3, H, W), float32."""
        return self.from_rgb(image_to_rgb(image))

    def tensor_to_image(self, x: torch.Tensor) -> Image.Image:
        """Network input (1, 3, H, W) or (3, H, W) → 8-bit RGB PIL image (clamped, rounded)."""
        return rgb_to_image(self.to_rgb(x if x.dim() == 4 else x.unsqueeze(0)))


# Caffe VGG (Simonyan & Zisserman, used by Gatys et al.): BGR, 0–255, minus the mean pixel.
CAFFE = Preprocessing("caffe", "BGR", 255.0, (103.939, 116.779, 123.68), (1.0, 1.0, 1.0))
# torchvision's ImageNet models: RGB, 0–1, per-channel mean and std.
TORCHVISION = Preprocessing("torchvision", "RGB", 1.0, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
PREPROCESSINGS = {p.name: p for p in (CAFFE, TORCHVISION)}
