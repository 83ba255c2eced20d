"""Gatys et al. (2016) losses, written as in the paper (§2, eqs. 1–7).

For a layer l with N_l filters and M_l = height × width positions, F^l is N_l × M_l:
- content (eq. 1):  L_content = ½ Σ_ij (F_ij − P_ij)²
- Gram (eq. 3):     G_ij = Σ_k F_ik F_jk
- style (eq. 4):    E_l = 1 / (4 N_l² M_l²) Σ_ij (G_ij − A_ij)²;   L_style = Σ_l w_l E_l
- total (eq. 7):    L = α L_content + β L_style
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """The paper's unnormalised Gram matrix G = F Fᵀ for features (B, N, H, W) → (B, N, N)."""
    if features.is_contiguous(memory_format=torch.channels_last):
        # (B, H·W, N) is a free view of channels-last memory; Fᵀ F then needs no copy.
        rows = features.permute(0, 2, 3, 1).reshape(features.shape[0], -1, features.shape[1])
        return rows.mT @ rows
    flat = features.flatten(2)
    return flat @ flat.mT


def content_loss(features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """½ Σ (F − P)², summed over the batch too."""
    return 0.5 * (features - target).square().sum()


def style_layer_loss(features: torch.Tensor, target_gram: torch.Tensor) -> torch.Tensor:
    """E_l = 1/(4 N² M²) Σ (G − A)² for features (B, N, H, W) and a target Gram A (N, N) or
    (B, N, N) that was computed for the same M = H·W (see :func:`scaled_gram`)."""
    return _StyleLayerLoss.apply(features, target_gram)


class _StyleLayerLoss(torch.autograd.Function):
    """E_l with its gradient in closed form: ∂E/∂F = (G − A)_sym F / (N² M²).

    Autograd through G = F Fᵀ would take two products (one per factor) and their sum, each the
    size of F; the closed form takes one (at relu1_1 of a 256 px image this halved the layer's
    backward time). The target is symmetrised, so any A gives the exact gradient.
    """

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, features, target_gram):  # type: ignore[override]
        channels = features.shape[1]
        positions = features.shape[2] * features.shape[3]
        # Divide by M before squaring: the same number, but it keeps the terms near 1.
        difference = (gram_matrix(features) - target_gram) / positions
        ctx.save_for_backward(features, difference)
        ctx.target_shape = target_gram.shape
        return difference.square().sum() / (4.0 * channels**2)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad_output):  # type: ignore[override]
        features, difference = ctx.saved_tensors
        channels = features.shape[1]
        positions = features.shape[2] * features.shape[3]
        scale = grad_output / (channels**2 * positions)
        symmetric = (difference + difference.mT) * (0.5 * scale)
        grad_features = None
        if ctx.needs_input_grad[0]:
            batch = features.shape[0]
            if features.is_contiguous(memory_format=torch.channels_last):
                rows = features.permute(0, 2, 3, 1).reshape(batch, -1, channels)
                grad_rows = rows @ symmetric  # (B, M, N): channels-last memory of (B, N, H, W)
                grad_features = grad_rows.reshape(
                    batch, features.shape[2], features.shape[3], channels
                ).permute(0, 3, 1, 2)
            else:
                grad_features = (symmetric @ features.flatten(2)).view_as(features)
        grad_target = None
        if ctx.needs_input_grad[1]:
            # ∂E/∂A = −(G − A) / (2 N² M²), summed over the batch where A is shared.
            grad_target = -difference * (grad_output / (2.0 * channels**2 * positions))
            grad_target = grad_target.sum_to_size(ctx.target_shape)
        return grad_features, grad_target


def scaled_gram(features: torch.Tensor, positions: int) -> torch.Tensor:
    """The Gram of ``features`` rescaled to ``positions`` (M) positions: G · M / (H·W).

    Departure from the paper, which uses style and output images of the same size: when the style
    image has a different size, its Gram grows with its own M, so we rescale it to the output's M
    (equivalently, compare G/M with A/M_style). For equal sizes this is exactly A.
    """
    own = features.shape[2] * features.shape[3]
    return gram_matrix(features) * (positions / own)


def total_variation(image: torch.Tensor) -> torch.Tensor:
    """Σ of squared differences between neighbouring pixels (not in the paper; off by default)."""
    dy = image[..., 1:, :] - image[..., :-1, :]
    dx = image[..., :, 1:] - image[..., :, :-1]
    return dy.square().sum() + dx.square().sum()


def _full_precision(x: torch.Tensor) -> torch.Tensor:
    """Half-precision features are promoted to float32 for the loss; float64 stays float64."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


@dataclass
class LossTerms:
    """One evaluation of the total loss and its parts (parts unweighted by α, β)."""

    total: torch.Tensor
    content: dict[str, torch.Tensor]
    style: dict[str, torch.Tensor]  # E_l per layer, before w_l
    tv: torch.Tensor | None

    def detach(self) -> LossTerms:
        """The same numbers, cut from the autograd graph."""
        return LossTerms(
            total=self.total.detach(),
            content={k: v.detach() for k, v in self.content.items()},
            style={k: v.detach() for k, v in self.style.items()},
            tv=None if self.tv is None else self.tv.detach(),
        )


class GatysLoss:
    """L = α Σ_l c_l L_content^l + β Σ_l w_l E_l (+ γ TV), with targets computed once."""

    def __init__(
        self,
        content_targets: Mapping[str, torch.Tensor],
        style_grams: Mapping[str, torch.Tensor],
        content_layers: Mapping[str, float],
        style_layers: Mapping[str, float],
        content_weight: float,
        style_weight: float,
        tv_weight: float = 0.0,
    ) -> None:
        self.content_targets = dict(content_targets)
        self.style_grams = dict(style_grams)
        self.content_layers = dict(content_layers)
        self.style_layers = dict(style_layers)
        self.content_weight = content_weight
        self.style_weight = style_weight
        self.tv_weight = tv_weight

    @property
    def layers(self) -> list[str]:
        """Every layer the loss reads (content and style)."""
        return list(dict.fromkeys([*self.content_layers, *self.style_layers]))

    def __call__(self, features: Mapping[str, torch.Tensor], image: torch.Tensor) -> LossTerms:
        content = {
            name: content_loss(_full_precision(features[name]), self.content_targets[name])
            for name in self.content_layers
        }
        style = {
            name: style_layer_loss(_full_precision(features[name]), self.style_grams[name])
            for name in self.style_layers
        }
        total = self.content_weight * sum(
            (weight * content[name] for name, weight in self.content_layers.items()),
            torch.zeros((), device=image.device),
        ) + self.style_weight * sum(
            (weight * style[name] for name, weight in self.style_layers.items()),
            torch.zeros((), device=image.device),
        )
        tv = None
        if self.tv_weight:
            tv = total_variation(image)
            total = total + self.tv_weight * tv
        return LossTerms(total=total, content=content, style=style, tv=tv)
