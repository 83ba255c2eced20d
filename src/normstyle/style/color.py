"""Colour control (Gatys, Ecker, Bethge, Hertzmann & Shechtman 2017, "Controlling Perceptual
Factors in Neural Style Transfer", §5). Tensors are RGB in [0, 1], shape (1, 3, H, W).

- Luminance-only transfer (§5.1): the content and the style image enter the network as their
  luminance (grey images), the style's matched to the content's mean and variance; the optimiser
  moves only the luminance; the content's chrominance (YIQ's I and Q) is put back at the end.
- Colour histogram matching (§5.2): the style image recoloured, x' = A (x − μ_S) + μ_C with
  A Σ_S Aᵀ = Σ_C, before the transfer. Of the two choices of A the paper names (a Cholesky
  factorisation, or "3D colour matching" from Image Analogies) we take the second,
  A = Σ_C^½ Σ_S^-½ with symmetric square roots.
- The same matching the other way round gives the default start image (``--init recolored``;
  not in the paper): the content image recoloured to the style images' colour mean and
  covariance (see :mod:`normstyle.style.initial`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

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
    """The stylised image's luminance with the content image's chrominance (I and Q), clamped
    to RGB's [0, 1].

    Used twice: after the paper's luminance-only transfer (§5.1, ``--preserve-colors
    luminance``), whose output is a grey image, and after a normal colour transfer
    (``luminance-swap``, as neural-style's ``-original_colors``: not the paper's method, the
    style's colours still shape the luminance).
    """
    yiq = rgb_to_yiq(stylized)
    content_yiq = rgb_to_yiq(content)
    return yiq_to_rgb(torch.cat([yiq[:, :1], content_yiq[:, 1:]], dim=1)).clamp(0, 1)


def luminance_image(rgb: torch.Tensor) -> torch.Tensor:
    """The image's luminance Y (YIQ) as a grey RGB image: Y in all three channels."""
    return rgb_to_yiq(rgb)[:, :1].expand(-1, 3, -1, -1).contiguous()


def matched_luminance(style: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """The style image's luminance, linearly matched to the content's mean and standard
    deviation (Gatys et al. 2017, §5.1: L_S' = σ_C/σ_S (L_S − μ_S) + μ_C), as a grey RGB image.
    Not clamped to [0, 1]: it only feeds the network, and clamping would undo the match."""
    style_y = rgb_to_yiq(style.double())[:, :1]
    content_y = rgb_to_yiq(content.double())[:, :1]
    scale = content_y.std() / style_y.std().clamp_min(1e-12)
    matched = (style_y - style_y.mean()) * scale + content_y.mean()
    return matched.to(style.dtype).expand(-1, 3, -1, -1).contiguous()


def grey_projection(
    scale: float, std: tuple[float, float, float]
) -> Callable[[torch.Tensor], torch.Tensor]:
    """The orthogonal projection, in a network's input space, onto the directions that keep a
    grey image grey — for the luminance-only transfer, whose optimiser steps only on Y.

    A grey pixel Y is x_c = (scale·Y − mean_c) / std_c in every channel c, so a change dY moves x
    along v = scale / std; the gradient's component along v is the one that changes Y, and
    stepping along it keeps the image grey (L-BFGS's directions are sums of such gradients)."""
    direction = torch.tensor([scale / s for s in std], dtype=torch.float64)
    unit = direction / direction.norm()

    def project(grad: torch.Tensor) -> torch.Tensor:
        v = unit.to(grad).view(1, 3, 1, 1)
        return v * (grad * v).sum(dim=1, keepdim=True)

    return project


def _sqrtm(matrix: torch.Tensor, inverse: bool = False) -> torch.Tensor:
    values, vectors = torch.linalg.eigh(matrix)
    values = values.clamp_min(1e-8)
    power = -0.5 if inverse else 0.5
    return vectors @ torch.diag(values**power) @ vectors.T


def color_moments(
    image: torch.Tensor, weight: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The colour mean (3, 1) and covariance (3, 3) of an RGB image (1, 3, H, W), in float64,
    its pixels weighted by ``weight`` (1, 1, H, W) ≥ 0 where given (a style mask's region).
    The covariance is the weighted population one (1/Σw, not 1/(N − 1))."""
    pixels = image[0].reshape(3, -1).double()
    if weight is None:
        w = torch.ones(pixels.shape[1], dtype=torch.float64)
    else:
        w = weight.reshape(-1).double().clamp_min(0)
    total = w.sum()
    if not total > 0:
        raise ValueError("color_moments: the weights select no pixel")
    mean = (pixels * w).sum(1, keepdim=True) / total
    centred = pixels - mean
    return mean, (centred * w) @ centred.T / total


def mixture_moments(
    moments: Sequence[tuple[torch.Tensor, torch.Tensor]], weights: Sequence[float]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and covariance of a mixture of colour distributions (weights summing to 1): the
    pixels of several style images pooled in the proportions of their blend weights."""
    mean = sum(w * m for w, (m, _) in zip(weights, moments))
    second = sum(w * (c + m @ m.T) for w, (m, c) in zip(weights, moments))
    assert isinstance(mean, torch.Tensor) and isinstance(second, torch.Tensor)
    return mean, second - mean @ mean.T


def recolored(image: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor) -> torch.Tensor:
    """``image`` (1, 3, H, W) recoloured to the colour ``mean`` and covariance ``cov`` (the
    paper's matching, x' = Σ^½ Σ_x^-½ (x − μ_x) + μ), clamped to RGB's [0, 1]."""
    own_mean, own_cov = color_moments(image)
    eye = 1e-6 * torch.eye(3, dtype=torch.float64)
    transform = _sqrtm(cov + eye) @ _sqrtm(own_cov + eye, inverse=True)
    pixels = image[0].reshape(3, -1).double()
    matched = transform @ (pixels - own_mean) + mean
    return matched.reshape(image.shape).to(image.dtype).clamp(0, 1)


def match_color_histogram(style: torch.Tensor, content: torch.Tensor) -> torch.Tensor:
    """Recolour ``style`` so its pixel mean and covariance equal ``content``'s (the paper's
    colour histogram matching: x' = Σ_c^½ Σ_s^-½ (x − μ_s) + μ_c)."""
    return recolored(style, *color_moments(content))
