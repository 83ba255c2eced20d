"""Colour preservation (Gatys, Ecker, Bethge, Hertzmann & Shechtman 2017, "Controlling
Perceptual Factors in Neural Style Transfer", §5). Tensors are RGB in [0, 1], shape (1, 3, H, W)."""

from __future__ import annotations

import torch

# RGB → YIQ (NTSC); the paper's luminance-only transfer uses the YIQ colour space.
_RGB_TO_YIQ = torch.tensor(
    [[0.299, 0.587, 0.114], [0.595716, -0.274453, -0.321263], [0.211456, -0.522591, 0.311135]],
    dtype=torch.float64,
)


def _apply(matrix: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    return torch.einsum("ij,bjhw->bihw", matrix.to(image), image)


def rgb_to_yiq(image: torch.Tensor) -> torch.Tensor:
    """RGB → YIQ."""
    return _apply(_RGB_TO_YIQ, image)


def yiq_to_rgb(image: torch.Tensor) -> torch.Tensor:
    """YIQ → RGB (exact inverse of :func:`rgb_to_yiq`)."""
    return _apply(torch.linalg.inv(_RGB_TO_YIQ), image)


def keep_luminance(stylized: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """The stylised image's luminance with the content image's chrominance (I and Q).

    Departure from the paper, which runs the transfer on luminance images and then recombines:
    we recombine after a normal (colour) transfer, as neural-style's ``-original_colors`` does;
    one optimisation serves both outputs.
    """
    yiq = rgb_to_yiq(stylized)
    content_yiq = rgb_to_yiq(content)
    return yiq_to_rgb(torch.cat([yiq[:, :1], content_yiq[:, 1:]], dim=1)).clamp(0, 1)


def _sqrtm(matrix: torch.Tensor, inverse: bool = False) -> torch.Tensor:
    values, vectors = torch.linalg.eigh(matrix)
    values = values.clamp_min(1e-8)
    power = -0.5 if inverse else 0.5
    return vectors @ torch.diag(values**power) @ vectors.T


def match_color_histogram(style: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """Recolour ``style`` so its pixel mean and covariance equal ``content``'s (the paper's
    colour histogram matching: x' = Σ_c^½ Σ_s^-½ (x − μ_s) + μ_c)."""
    source = style[0].reshape(3, -1).double()
    target = content[0].reshape(3, -1).double()
    mean_s, mean_c = source.mean(1, keepdim=True), target.mean(1, keepdim=True)
    cov_s = torch.cov(source) + 1e-6 * torch.eye(3, dtype=torch.float64)
    cov_c = torch.cov(target) + 1e-6 * torch.eye(3, dtype=torch.float64)
    transform = _sqrtm(cov_c) @ _sqrtm(cov_s, inverse=True)
    matched = transform @ (source - mean_s) + mean_c
    return matched.reshape(style.shape).to(style.dtype).clamp(0, 1)
