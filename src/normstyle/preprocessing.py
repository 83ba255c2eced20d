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


def image_to_rgb(image: Image.Image) -> torch.Tensor:
    """An RGB PIL image → float32 tensor (1, 3, H, W) in [0, 1]."""
    array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0).contiguous()


def rgb_to_image(rgb: torch.Tensor) -> Image.Image:
    """A tensor (1, 3, H, W) or (3, H, W) in [0, 1] → 8-bit RGB PIL image (clamped, rounded)."""
    if rgb.dim() == 4:
        if rgb.shape[0] != 1:
            raise ValueError(f"expected one image, got a batch of {rgb.shape[0]}")
        rgb = rgb[0]
    array = (rgb.detach().float().cpu().clamp(0, 1) * 255).round().to(torch.uint8)
    return Image.fromarray(array.permute(1, 2, 0).numpy(), mode="RGB")


# Caffe VGG (Simonyan & Zisserman, used by Gatys et al.): BGR, 0–255, minus the mean pixel.
CAFFE = Preprocessing("caffe", "BGR", 255.0, (103.939, 116.779, 123.68), (1.0, 1.0, 1.0))
# torchvision's ImageNet models: RGB, 0–1, per-channel mean and std.
TORCHVISION = Preprocessing("torchvision", "RGB", 1.0, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
PREPROCESSINGS = {p.name: p for p in (CAFFE, TORCHVISION)}
