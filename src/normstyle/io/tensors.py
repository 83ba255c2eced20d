"""Between pictures and tensors: decoded arrays and PIL images to the (1, 3, H, W) float
tensors in [0, 1] that every network input starts from, and back to 8-bit images."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image


def as_tensor(rgb: np.ndarray) -> torch.Tensor:
    """A float RGB array (H, W, 3) in [0, 1] → float32 tensor (1, 3, H, W)."""
    array = np.ascontiguousarray(rgb, dtype=np.float32)
    return torch.from_numpy(array).permute(2, 0, 1).unsqueeze(0).contiguous()


def image_to_rgb(image: Image.Image) -> torch.Tensor:
    """An RGB PIL image → float32 tensor (1, 3, H, W) in [0, 1]."""
    return as_tensor(np.asarray(image.convert("RGB"), dtype=np.float32) / np.float32(255.0))


def rgb_to_image(rgb: torch.Tensor) -> Image.Image:
    """A tensor (1, 3, H, W) or (3, H, W) in [0, 1] → 8-bit RGB PIL image (clamped, rounded)."""
    if rgb.dim() == 4:
        if rgb.shape[0] != 1:
            raise ValueError(f"expected one image, got a batch of {rgb.shape[0]}")
        rgb = rgb[0]
    array = (rgb.detach().float().cpu().clamp(0, 1) * 255).round().to(torch.uint8)
    return Image.fromarray(array.permute(1, 2, 0).numpy(), mode="RGB")
