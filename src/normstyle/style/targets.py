"""The targets of Gatys et al.'s loss, computed once per level: the content image's features and
the (blended) Gram matrices of the style images, with the default style weight β."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from normstyle.errors import OptionError
from normstyle.nets.preprocessing import Preprocessing
from normstyle.nets.vgg import VGG
from normstyle.runtime.precision import Runtime, resolve_runtime
from normstyle.style.losses import GatysLoss, scaled_gram
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
) -> GatysLoss:
    """The Gatys loss with its targets (content features, blended style Grams) computed once,
    in the runtime's precision, kept in fp32."""
    runtime = runtime or resolve_runtime("cpu", "fp32")
    layers = list(dict.fromkeys([*options.content_layers, *options.style_layers]))
    # The output has the content image's size: its features tell each layer's M = H·W.
    content_x = prep.from_rgb(content_rgb).to(runtime.device)
    content_features = {
        k: v.float() for k, v in network_features(model, content_x, layers, runtime).items()
    }
    positions = {name: f.shape[2] * f.shape[3] for name, f in content_features.items()}
    # Several styles: the target is the blend of their Grams. With weights summing to 1 this has
    # the same gradient as the weighted sum of separate style losses, at the cost of one.
    grams: dict[str, torch.Tensor] = {}
    for weight, style_rgb in zip(blend, style_rgbs):
        style_x = prep.from_rgb(style_rgb).to(runtime.device)
        features = network_features(model, style_x, list(options.style_layers), runtime)
        for name, value in features.items():
            gram = weight * scaled_gram(value.float(), positions[name])
            grams[name] = grams[name] + gram if name in grams else gram
    style_weight = options.style_weight
    if style_weight is None:
        values = sum(w * content_features[n][0].numel() for n, w in options.content_layers.items())
        style_weight = STYLE_WEIGHT_PER_CONTENT_VALUE * max(values, 1.0)
    return GatysLoss(
        content_targets={name: content_features[name] for name in options.content_layers},
        style_grams=grams,
        content_layers=options.content_layers,
        style_layers=options.style_layers,
        content_weight=options.content_weight,
        style_weight=style_weight,
        tv_weight=options.tv_weight,
    )
