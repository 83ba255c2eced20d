"""Gatys et al. (2016) losses, written as in the paper (§2, eqs. 1–7).

For a layer l with N_l filters and M_l = height × width positions, F^l is N_l × M_l:
- content (eq. 1):  L_content = ½ Σ_ij (F_ij − P_ij)²
- Gram (eq. 3):     G_ij = Σ_k F_ik F_jk
- style (eq. 4):    E_l = 1 / (4 N_l² M_l²) Σ_ij (G_ij − A_ij)²;   L_style = Σ_l w_l E_l
- total (eq. 7):    L = α L_content + β L_style

Spatial control (Gatys, Ecker, Bethge, Hertzmann & Shechtman 2017, "Controlling Perceptual
Factors in Neural Style Transfer", §4): a guidance channel T_r per region weights each position's
features, F_r = T_r ∘ F, and the region's *guided Gram* G_r = F_r F_rᵀ = F diag(T_r²) Fᵀ is
compared with its style's Gram taken on that style's own region, each normalised by its region's
size m = Σ T² — for a mask of ones, m = M and this is eq. 4 exactly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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


def guided_gram_matrix(features: torch.Tensor, position_weights: torch.Tensor) -> torch.Tensor:
    """The guided Gram G = F diag(t) Fᵀ for features (B, N, H, W) and per-position weights t
    (1 or B, 1, H, W): with t = T² for a guidance channel T, the Gram of the guided features
    T ∘ F (Gatys et al. 2017, §4). A t of ones gives :func:`gram_matrix`."""
    return gram_matrix(features * position_weights.sqrt())


def style_layer_loss(
    features: torch.Tensor,
    target_gram: torch.Tensor,
    position_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """E_l = 1/(4 N² M²) Σ (G − A)² for features (B, N, H, W) and a target Gram A (N, N) or
    (B, N, N) that was computed for the same M = H·W (see :func:`scaled_gram`).

    With ``position_weights`` t (1 or B, 1, H, W; t = T² for a guidance channel T), the guided
    version: G = F diag(t) Fᵀ and M replaced by the region's size m = Σ t (per image), so A must
    be the style's Gram scaled to m positions."""
    if position_weights is None:
        return _StyleLayerLoss.apply(features, target_gram, None)
    weights = position_weights.to(features.dtype).expand(features.shape[0], 1, *features.shape[2:])
    return _StyleLayerLoss.apply(features, target_gram, weights)


class _StyleLayerLoss(torch.autograd.Function):
    """E_l with its gradient in closed form: ∂E/∂F = t ⊙ (G − A)_sym F / (N² m²).

    Autograd through G = F Fᵀ would take two products (one per factor) and their sum, each the
    size of F; the closed form takes one (at relu1_1 of a 256 px image this halved the layer's
    backward time). The target is symmetrised, so any A gives the exact gradient. Without
    position weights t ≡ 1 and m = M.
    """

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, features, target_gram, weights):  # type: ignore[override]
        batch, channels = features.shape[:2]
        if weights is None:
            positions = features.new_full((batch, 1, 1), features.shape[2] * features.shape[3])
            gram = gram_matrix(features)
        else:
            positions = weights.sum(dim=(1, 2, 3)).view(batch, 1, 1)
            gram = gram_matrix(features * weights.sqrt())
        # Divide by M before squaring: the same number, but it keeps the terms near 1.
        difference = (gram - target_gram) / positions
        ctx.save_for_backward(features, difference, positions, weights)
        ctx.target_shape = target_gram.shape
        return difference.square().sum() / (4.0 * channels**2)

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad_output):  # type: ignore[override]
        features, difference, positions, weights = ctx.saved_tensors
        batch, channels = features.shape[:2]
        scale = grad_output / (channels**2 * positions)
        symmetric = (difference + difference.mT) * (0.5 * scale)
        grad_features = None
        if ctx.needs_input_grad[0]:
            if features.is_contiguous(memory_format=torch.channels_last):
                rows = features.permute(0, 2, 3, 1).reshape(batch, -1, channels)
                grad_rows = rows @ symmetric  # (B, M, N): channels-last memory of (B, N, H, W)
                grad_features = grad_rows.reshape(
                    batch, features.shape[2], features.shape[3], channels
                ).permute(0, 3, 1, 2)
            else:
                grad_features = (symmetric @ features.flatten(2)).view_as(features)
            if weights is not None:
                grad_features = grad_features * weights
        grad_target = None
        if ctx.needs_input_grad[1]:
            # ∂E/∂A = −(G − A) / (2 N² M²), summed over the batch where A is shared.
            grad_target = -difference * (grad_output / (2.0 * channels**2 * positions))
            grad_target = grad_target.sum_to_size(ctx.target_shape)
        return grad_features, grad_target, None


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


def full_precision(x: torch.Tensor) -> torch.Tensor:
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


@dataclass
class StyleRegion:
    """One region's style term (spatial control): Σ_l w_l E_l of the guided Grams.

    ``grams``: per layer, the style's Gram on its own region, scaled to this region's size m_l
    (:func:`region_gram`); ``position_weights``: per layer, t = T² over the output's feature
    map; ``strength``: the factor on the region's term where its mask is 1 (its style blend
    weight, 1 by default)."""

    grams: dict[str, torch.Tensor]
    layers: dict[str, float]
    position_weights: dict[str, torch.Tensor]
    strength: float = 1.0

    def share(self, name: str) -> float:
        """The fraction of layer ``name``'s positions the region covers, Σ t / M: its term
        counts that much, so that per position a region's style pulls as hard as a whole-image
        style does (for a mask of ones the term is exactly the plain one)."""
        weights = self.position_weights[name]
        return float(weights.sum()) / weights[0, 0].numel()


def region_gram(
    features: torch.Tensor, position_weights: torch.Tensor, positions: float
) -> torch.Tensor:
    """A style image's guided Gram on its region (``position_weights`` t = T² over its feature
    map), normalised by the region's size Σ t and scaled to ``positions`` — the size of the
    output region it is compared with."""
    size = float(position_weights.sum())
    return guided_gram_matrix(features, position_weights) * (positions / size)


class GatysLoss:
    """L = α Σ_l c_l L_content^l + β Σ_l w_l E_l (+ γ TV), with targets computed once.

    With ``regions`` (spatial control) the style term is Σ_r strength_r Σ_l w_l^r share_l^r
    E_l^r over the regions' guided Grams instead, and ``style_grams`` is not used; the per-layer
    E_l reported is then the regions' weighted mean, so that β Σ_l w_l E_l stays the style term.
    """

    def __init__(
        self,
        content_targets: Mapping[str, torch.Tensor],
        style_grams: Mapping[str, torch.Tensor],
        content_layers: Mapping[str, float],
        style_layers: Mapping[str, float],
        content_weight: float,
        style_weight: float,
        tv_weight: float = 0.0,
        regions: Sequence[StyleRegion] = (),
    ) -> None:
        self.content_targets = dict(content_targets)
        self.style_grams = dict(style_grams)
        self.content_layers = dict(content_layers)
        self.style_layers = dict(style_layers)
        self.content_weight = content_weight
        self.style_weight = style_weight
        self.tv_weight = tv_weight
        self.regions = list(regions)
        # Each region's factor per layer, w_l^r · strength_r · share_l^r, fixed for the level.
        self._region_factors = [
            {
                name: weight * region.strength * region.share(name)
                for name, weight in region.layers.items()
            }
            for region in self.regions
        ]
        if self.regions:
            self.style_layers = {}
            for factors in self._region_factors:
                for name, factor in factors.items():
                    self.style_layers[name] = self.style_layers.get(name, 0.0) + factor

    @property
    def layers(self) -> list[str]:
        """Every layer the loss reads (content and style)."""
        return list(dict.fromkeys([*self.content_layers, *self.style_layers]))

    def _style_terms(self, features: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        if not self.regions:
            return {
                name: style_layer_loss(full_precision(features[name]), self.style_grams[name])
                for name in self.style_layers
            }
        sums: dict[str, torch.Tensor] = {}
        for region, factors in zip(self.regions, self._region_factors):
            for name, factor in factors.items():
                if factor == 0:  # a region with no positions left at this layer
                    continue
                value = factor * style_layer_loss(
                    full_precision(features[name]),
                    region.grams[name],
                    region.position_weights[name],
                )
                sums[name] = sums[name] + value if name in sums else value
        zero = torch.zeros((), device=next(iter(features.values())).device)
        return {
            name: sums[name] / total if name in sums else zero
            for name, total in self.style_layers.items()
        }

    def __call__(self, features: Mapping[str, torch.Tensor], image: torch.Tensor) -> LossTerms:
        content = {
            name: content_loss(full_precision(features[name]), self.content_targets[name])
            for name in self.content_layers
        }
        style = self._style_terms(features)
        total = self.content_weight * sum(
            (weight * content[name] for name, weight in self.content_layers.items()),
            torch.zeros((), device=image.device),
        ) + self.style_weight * sum(
            (self.style_layers[name] * value for name, value in style.items()),
            torch.zeros((), device=image.device),
        )
        tv = None
        if self.tv_weight:
            tv = total_variation(image)
            total = total + self.tv_weight * tv
        return LossTerms(total=total, content=content, style=style, tv=tv)
