"""The targets of Gatys et al.'s loss, computed once per level: the content image's features and
the (blended) Gram matrices of the style images, with the default style weight β."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from normstyle.errors import InputError, OptionError
from normstyle.nets.preprocessing import Preprocessing
from normstyle.nets.vgg import VGG
from normstyle.runtime.precision import Runtime, resolve_runtime
from normstyle.style.banded import banded_targets
from normstyle.style.bands import feature_sizes
from normstyle.style.guidance import layer_position_weights
from normstyle.style.losses import GatysLoss, StyleRegion, region_gram, scaled_gram
from normstyle.style.options import StyleOptions
from normstyle.style.precision import network_features

# Default β per content feature value (see StyleOptions.style_weight and the README): the content
# loss ½Σ(F−P)² grows with the number of values N·M, the style loss E_l does not, so a β
# proportional to N·M keeps their balance — and the look — the same at every image size. The
# factor was chosen by measurement (README, "How stylised"): the smallest measured one at which,
# started from the content, the output is at least as stylised in the deep layers as
# pastiche's default on every pair and keeps the content better (at 10, the first default, it
# kept 40% of the photo's deep style distance to Starry Night, pastiche 12%).
STYLE_WEIGHT_PER_CONTENT_VALUE = 600.0


def blend_weights(blend: Sequence[float] | None, count: int) -> list[float]:
    if blend is None:
        return [1.0 / count] * count
    if len(blend) != count:
        raise OptionError(f"{len(blend)} style blend weights for {count} style images")
    largest = max(blend)
    if largest <= 0:
        raise OptionError("style blend weights must not all be zero")
    scaled = [w / largest for w in blend]  # first to at most 1: 1e308 + 1e308 would be inf
    total = sum(scaled)
    return [w / total for w in scaled]


@torch.no_grad()
def build_loss(
    model: VGG,
    prep: Preprocessing,
    content_rgb: torch.Tensor,
    style_rgbs: Sequence[torch.Tensor],
    blend: Sequence[float],
    options: StyleOptions,
    runtime: Runtime | None = None,
    masks: Sequence[torch.Tensor] | None = None,
    style_masks: Sequence[torch.Tensor | None] | None = None,
    tile: tuple[int, int] | None = None,
) -> GatysLoss:
    """The Gatys loss with its targets (content features, blended style Grams) computed once,
    in the runtime's precision, kept in fp32.

    ``masks`` (spatial control): one guidance mask per style image, (1, 1, H, W) at the content
    image's size; each style then has its own region and guided Grams (see
    :mod:`normstyle.style.guidance`). ``style_masks``: per style image, a mask at its own size
    (or None) that restricts its Gram to that region. ``tile``: compute the targets in tiles of
    (about) that many (rows, columns) (exactly the same numbers, in a fraction of the memory; see
    :mod:`normstyle.style.banded`).
    """
    runtime = runtime or resolve_runtime("cpu", "fp32")
    per_style = options.style_layers_per_style(len(style_rgbs))
    style_layers = options.style_layer_names()
    layers = list(dict.fromkeys([*options.content_layers, *style_layers]))
    # The output has the content image's size: its features tell each layer's M = H·W.
    content_x = prep.from_rgb(content_rgb).to(runtime.device)
    sizes = feature_sizes(model, layers, *content_x.shape[2:])
    positions = {name: height * width for name, (height, width) in sizes.items()}
    if tile is None:
        content_features = {
            k: v.float()
            for k, v in network_features(
                model, content_x, list(options.content_layers), runtime
            ).items()
        }
    else:
        content_features, _ = banded_targets(
            model, content_x, runtime, tile, list(options.content_layers), {}
        )
    style_masks = style_masks if style_masks is not None else [None] * len(style_rgbs)
    # Per style image and layer, its Gram per position: G / M, or on its region G_T / Σ t.
    style_grams: list[dict[str, torch.Tensor]] = []
    for number, (style_rgb, used, mask) in enumerate(zip(style_rgbs, per_style, style_masks), 1):
        style_x = prep.from_rgb(style_rgb).to(runtime.device)
        weights = None
        if mask is not None:
            weights = layer_position_weights(model, mask.to(runtime.device), used)
            for name, value in weights.items():
                if float(value.sum()) <= 0:
                    raise InputError(
                        f"style mask {number} selects too few pixels to reach {name}: make its"
                        " region larger"
                    )
        if tile is not None:  # the Grams summed tile by tile, then per position
            _, sums = banded_targets(
                model,
                style_x,
                runtime,
                tile,
                [],
                {name: None if weights is None else weights[name] for name in used},
            )
            style_sizes = feature_sizes(model, used, *style_x.shape[2:])
            style_grams.append(
                {
                    name: gram
                    / (
                        float(weights[name].sum())
                        if weights is not None
                        else style_sizes[name][0] * style_sizes[name][1]
                    )
                    for name, gram in sums.items()
                }
            )
            continue
        features = network_features(model, style_x, list(used), runtime)
        if weights is None:
            style_grams.append({k: scaled_gram(v.float(), 1) for k, v in features.items()})
        else:
            style_grams.append(
                {k: region_gram(v.float(), weights[k], 1.0) for k, v in features.items()}
            )

    style_weight = options.style_weight
    if style_weight is None:
        values = sum(w * content_features[n][0].numel() for n, w in options.content_layers.items())
        style_weight = STYLE_WEIGHT_PER_CONTENT_VALUE * max(values, 1.0)
    content_targets = {name: content_features[name] for name in options.content_layers}
    common = dict(
        content_targets=content_targets,
        content_layers=options.content_layers,
        content_weight=options.content_weight,
        style_weight=style_weight,
        tv_weight=options.tv_weight,
    )
    if masks is not None:
        # One region per style image; its strength is its blend weight, scaled so that equal
        # weights give each region the full strength of a whole-image style.
        regions = []
        for weight, grams, used, mask in zip(blend, style_grams, per_style, masks):
            guide = layer_position_weights(model, mask.to(runtime.device), used)
            targets = {name: grams[name] * float(guide[name].sum()) for name in used}
            regions.append(StyleRegion(targets, dict(used), guide, weight * len(style_rgbs)))
        return GatysLoss(style_grams={}, style_layers={}, regions=regions, **common)
    # Several styles: the target is the blend of their Grams. With weights summing to 1 this has
    # the same gradient as the weighted sum of separate style losses, at the cost of one. With
    # one set of layers per style image (scale control), a layer blends the styles that use it,
    # and its weight w_l is their blend of the weights given for it.
    blended: dict[str, torch.Tensor] = {}
    layer_weights: dict[str, float] = {}
    totals: dict[str, float] = {}
    for weight, grams, used in zip(blend, style_grams, per_style):
        for name, layer_weight in used.items():
            value = weight * grams[name] * positions[name]
            blended[name] = blended[name] + value if name in blended else value
            layer_weights[name] = layer_weights.get(name, 0.0) + weight * layer_weight
            totals[name] = totals.get(name, 0.0) + weight
    kept = [name for name in style_layers if totals.get(name, 0.0) > 0]
    return GatysLoss(
        style_grams={name: blended[name] / totals[name] for name in kept},
        style_layers={name: layer_weights[name] / totals[name] for name in kept},
        **common,
    )
