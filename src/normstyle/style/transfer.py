"""The optimisation of Gatys et al. (2016): start from an image, minimise the total loss over its
pixels with L-BFGS (or Adam), in the network's input space."""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from tqdm.auto import tqdm

from normstyle.errors import OptionError, check_names
from normstyle.images import ImageSource, load_rgb, save_image
from normstyle.models.vgg import VGG
from normstyle.preprocessing import Preprocessing, rgb_to_image
from normstyle.style.color import keep_luminance, match_color_histogram
from normstyle.style.losses import GatysLoss, LossTerms, scaled_gram
from normstyle.style.options import StyleOptions
from normstyle.weights import get_weights

StepCallback = Callable[[int, torch.Tensor, LossTerms], None]


@dataclass
class Stylization:
    """The result of a run: the image and what it took."""

    image: Image.Image
    seed: int
    losses: list[float] = field(default_factory=list)  # total loss at each evaluation
    final: dict[str, float] = field(default_factory=dict)  # final loss terms, by name
    seconds: float = 0.0


def stylize(
    content: ImageSource, style: ImageSource | Sequence[ImageSource], **options: Any
) -> Image.Image:
    """Stylise ``content`` with one or more ``style`` images; returns an RGB PIL image.

    Images may be paths (or ``builtin:NAME``), PIL images, or RGB float tensors in [0, 1].
    ``options`` are the fields of :class:`StyleOptions` (e.g. ``size=256, iterations=300``).
    """
    return run(content, style, StyleOptions.from_kwargs(**options)).image


def run(
    content: ImageSource,
    style: ImageSource | Sequence[ImageSource],
    options: StyleOptions,
    on_step: StepCallback | None = None,
    output: str | Path | None = None,
) -> Stylization:
    """Run one stylisation. ``on_step(iteration, image, terms)`` is called after every step;
    ``output``, if given, is where ``save_every`` writes its intermediate images (next to it)."""
    options.validate()
    started = time.perf_counter()
    styles = list(style) if isinstance(style, (list, tuple)) else [style]
    if not styles:
        raise OptionError("at least one style image is needed")
    blend = _blend_weights(options.style_blend, len(styles))
    seed = options.seed if options.seed is not None else random.randrange(2**31)

    weights = get_weights(options.weights)
    model = weights.build(pooling=options.pooling)
    check_names([*options.content_layers, *options.style_layers], model.layer_names)
    prep = weights.preprocessing

    content_rgb = load_rgb(content, options.size)
    style_rgbs = [load_rgb(s, max(16, round(options.size * options.style_scale))) for s in styles]
    if options.preserve_colors == "histogram":
        style_rgbs = [match_color_histogram(s, content_rgb) for s in style_rgbs]
    loss = build_loss(model, prep, content_rgb, style_rgbs, blend, options)
    start = initial_image(options.init, content_rgb, prep, seed)

    callbacks = [cb for cb in (on_step, _saver(options, prep, output)) if cb is not None]
    result_x, losses, terms = optimize(model, loss, start, options, prep, callbacks)

    rgb = prep.to_rgb(result_x).clamp(0, 1)
    if options.preserve_colors == "luminance":
        rgb = keep_luminance(rgb, content_rgb)
    final = {"total": float(terms.total)}
    final |= {f"content/{k}": float(v) for k, v in terms.content.items()}
    final |= {f"style/{k}": float(v) for k, v in terms.style.items()}
    return Stylization(
        image=rgb_to_image(rgb),
        seed=seed,
        losses=losses,
        final=final,
        seconds=time.perf_counter() - started,
    )


def _blend_weights(blend: Sequence[float] | None, count: int) -> list[float]:
    if blend is None:
        return [1.0 / count] * count
    if len(blend) != count:
        raise OptionError(f"{len(blend)} style blend weights for {count} style images")
    total = sum(blend)
    if total <= 0:
        raise OptionError("style blend weights must not all be zero")
    return [w / total for w in blend]


@torch.no_grad()
def build_loss(
    model: VGG,
    prep: Preprocessing,
    content_rgb: torch.Tensor,
    style_rgbs: Sequence[torch.Tensor],
    blend: Sequence[float],
    options: StyleOptions,
) -> GatysLoss:
    """The Gatys loss with its targets (content features, blended style Grams) computed once."""
    layers = list(dict.fromkeys([*options.content_layers, *options.style_layers]))
    # The output has the content image's size: its features tell each layer's M = H·W.
    content_features = model(prep.from_rgb(content_rgb), layers)
    positions = {name: f.shape[2] * f.shape[3] for name, f in content_features.items()}
    # Several styles: the target is the blend of their Grams. With weights summing to 1 this has
    # the same gradient as the weighted sum of separate style losses, at the cost of one.
    grams: dict[str, torch.Tensor] = {}
    for weight, style_rgb in zip(blend, style_rgbs):
        features = model(prep.from_rgb(style_rgb), list(options.style_layers))
        for name, value in features.items():
            gram = weight * scaled_gram(value.float(), positions[name])
            grams[name] = grams[name] + gram if name in grams else gram
    return GatysLoss(
        content_targets={name: content_features[name] for name in options.content_layers},
        style_grams=grams,
        content_layers=options.content_layers,
        style_layers=options.style_layers,
        content_weight=options.content_weight,
        style_weight=options.style_weight,
        tv_weight=options.tv_weight,
    )


def initial_image(
    init: str, content_rgb: torch.Tensor, prep: Preprocessing, seed: int
) -> torch.Tensor:
    """The starting point in network input space: white noise (the paper), the content image,
    or an image file resized to the content's size."""
    if init == "noise":
        generator = torch.Generator().manual_seed(seed)
        rgb = torch.rand(content_rgb.shape, generator=generator)
    elif init == "content":
        rgb = content_rgb.clone()
    else:
        rgb = load_rgb(init)
        rgb = torch.nn.functional.interpolate(
            rgb, size=content_rgb.shape[2:], mode="bicubic", antialias=True, align_corners=False
        ).clamp(0, 1)
    return prep.from_rgb(rgb)


def optimize(
    model: VGG,
    loss: GatysLoss,
    start: torch.Tensor,
    options: StyleOptions,
    prep: Preprocessing,
    callbacks: Sequence[StepCallback] = (),
) -> tuple[torch.Tensor, list[float], LossTerms]:
    """Minimise ``loss`` over the pixels of ``start``; returns the image, the loss history and
    the last evaluation's terms."""
    x = start.clone().requires_grad_(True)
    layers = loss.layers
    if options.optimizer == "lbfgs":
        # One L-BFGS iteration per step() call (one loss evaluation, no line search, as in
        # neural-style); the curvature history persists across calls.
        optimizer: torch.optim.Optimizer = torch.optim.LBFGS(
            [x],
            lr=options.step_size(),
            max_iter=1,
            history_size=100,
            tolerance_grad=0.0,
            tolerance_change=0.0,
        )
    else:
        optimizer = torch.optim.Adam([x], lr=options.step_size() * prep.pixel_unit)

    last: list[LossTerms] = []

    def closure() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        terms = loss(model(x, layers), x)
        if not torch.isfinite(terms.total):
            raise RuntimeError("the loss is not finite: lower the learning rate or the weights")
        terms.total.backward()
        last[:] = [terms]
        return terms.total

    losses: list[float] = []
    report_every = max(1, options.iterations // 10)
    with tqdm(
        total=options.iterations,
        desc="stylize",
        unit="it",
        disable=not options.progress,
        dynamic_ncols=True,
    ) as bar:
        for iteration in range(1, options.iterations + 1):
            optimizer.step(closure)
            terms = last[0]
            losses.append(terms.total.item())
            bar.update(1)
            bar.set_postfix(loss=f"{losses[-1]:.4g}", refresh=False)
            if options.verbose and (iteration % report_every == 0 or iteration == 1):
                tqdm.write(format_terms(iteration, terms, loss))
            for callback in callbacks:
                callback(iteration, x.detach(), terms)
    # The last evaluation was at the image before the final update; evaluate the result itself.
    with torch.no_grad():
        final = loss(model(x, layers), x)
    return x.detach(), losses, final


def format_terms(iteration: int, terms: LossTerms, loss: GatysLoss) -> str:
    """One line: total, weighted content and style terms per layer."""
    parts = [f"iter {iteration:5d}  total {float(terms.total):.4g}"]
    for name, value in terms.content.items():
        parts.append(
            f"content {name} {loss.content_weight * loss.content_layers[name] * float(value):.3g}"
        )
    for name, value in terms.style.items():
        parts.append(
            f"style {name} {loss.style_weight * loss.style_layers[name] * float(value):.3g}"
        )
    if terms.tv is not None:
        parts.append(f"tv {loss.tv_weight * float(terms.tv):.3g}")
    return "  ".join(parts)


def _saver(
    options: StyleOptions, prep: Preprocessing, output: str | Path | None
) -> StepCallback | None:
    if not options.save_every or output is None:
        return None
    output = Path(output)
    width = len(str(options.iterations))

    def save(iteration: int, x: torch.Tensor, _terms: LossTerms) -> None:
        if iteration % options.save_every == 0 and iteration != options.iterations:
            path = output.with_name(f"{output.stem}_{iteration:0{width}d}{output.suffix}")
            save_image(prep.tensor_to_image(x), path)

    return save
