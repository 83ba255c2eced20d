"""The optimisation of Gatys et al. (2016): start from an image, minimise the total loss over its
pixels with L-BFGS (or Adam), in the network's input space; optionally coarse-to-fine."""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image
from tqdm.auto import tqdm

from normstyle.budget import check_fits, stylization_bytes
from normstyle.errors import OptionError, check_names
from normstyle.images import ImageSource, decoded, image_size, load_rgb, save_image, scaled_size
from normstyle.models.chain import chain_of, run_chain
from normstyle.models.vgg import VGG, vgg_layer_names
from normstyle.preprocessing import Preprocessing, rgb_to_image
from normstyle.runtime import Runtime, resolve_runtime
from normstyle.style.color import keep_luminance, match_color_histogram
from normstyle.style.losses import GatysLoss, LossTerms, scaled_gram
from normstyle.style.optimizer import LBFGS, Adam, Minimized, PixelOptimizer, minimize
from normstyle.style.options import StyleOptions
from normstyle.weights import for_stylization

StepCallback = Callable[[int, torch.Tensor, LossTerms], None]

# Default β per content feature value (see StyleOptions.style_weight and the README): the content
# loss ½Σ(F−P)² grows with the number of values N·M, the style loss E_l does not, so a β
# proportional to N·M keeps their balance — and the look — the same at every image size.
STYLE_WEIGHT_PER_CONTENT_VALUE = 10.0
# L-BFGS curvature pairs kept, as neural-style (each costs two image-sized tensors).
LBFGS_HISTORY = 100


@dataclass
class Stylization:
    """The result of a run: the image and what it took."""

    image: Image.Image
    seed: int
    runtime: str = ""
    losses: list[float] = field(default_factory=list)  # total loss after each iteration
    final: dict[str, float] = field(default_factory=dict)  # final loss terms, by name
    style_weight: float = 0.0  # the β used at the final level
    seconds: float = 0.0
    tensor: torch.Tensor | None = None  # the final image in network input space (fp32, CPU)
    events: list[str] = field(default_factory=list)  # steps the optimiser's guard rejected
    stopped: str | None = None  # why the optimiser stopped early, if it did


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
    written: list[Path] | None = None,
) -> Stylization:
    """Run one stylisation. ``on_step(iteration, image, terms)`` is called after every step;
    ``output``, if given, is where ``save_every`` writes its intermediate images (next to it),
    each appended to ``written`` as soon as it exists."""
    options.validate()
    started = time.perf_counter()
    styles = list(style) if isinstance(style, (list, tuple)) else [style]
    if not styles:
        raise OptionError("at least one style image is needed")
    blend = _blend_weights(options.style_blend, len(styles))
    seed = options.seed if options.seed is not None else random.randrange(2**31)
    runtime = resolve_runtime(options.device, options.precision)
    # Decode each file once (before the network loads, so a bad image fails fast); every
    # coarse-to-fine level resizes from the decoded image.
    content_source, style_sources = content, styles
    content = decoded(content)
    styles = [decoded(s) for s in styles]
    init = options.init if options.init in ("noise", "content") else decoded(options.init)

    weights = for_stylization(options.weights, options.normalize)
    layer_names = vgg_layer_names(weights.arch)
    check_names([*options.content_layers, *options.style_layers], layer_names)
    # Every level's images are checked (size, memory) before the network is built.
    names = [_name(content_source, "the content image")] + [
        _name(source, "the style image" if len(styles) == 1 else f"style image {number}")
        for number, source in enumerate(style_sources, start=1)
    ]
    levels = plan_levels(options, content, styles, layer_names, runtime, names)
    model = weights.build(pooling=options.pooling)
    model = model.to(runtime.device, memory_format=runtime.memory_format)
    prep = weights.preprocessing

    x: torch.Tensor | None = None
    losses: list[float] = []
    events: list[str] = []
    stopped: list[str] = []
    done = 0
    for level in levels:
        iterations = level.iterations
        content_rgb = load_rgb(content, level.size)
        style_rgbs = [load_rgb(s, level.style_size) for s in styles]
        if options.preserve_colors == "histogram":
            style_rgbs = [match_color_histogram(s, content_rgb) for s in style_rgbs]
        loss = build_loss(model, prep, content_rgb, style_rgbs, blend, options, runtime)
        if x is None:
            start = initial_image(init, content_rgb, prep, seed)
        else:  # coarse-to-fine: the previous level's result, upsampled, is this level's start
            start = F.interpolate(
                x, size=content_rgb.shape[2:], mode="bicubic", align_corners=False
            )
        saver = _saver(options, prep, output, offset=done, written=written)
        callbacks = [cb for cb in (on_step, saver) if cb]
        result = optimize(
            model, loss, start.to(runtime.device), iterations, options, prep, runtime, callbacks
        )
        x, terms = result.x, result.extra
        losses += result.losses
        events += result.events
        if result.stopped:
            stopped.append(result.stopped)
        done += iterations
    assert x is not None

    x = x.float().cpu()
    rgb = prep.to_rgb(x).clamp(0, 1)
    if options.preserve_colors == "luminance":
        rgb = keep_luminance(rgb, content_rgb)  # the last level's: options.size
    final = {"total": float(terms.total)}
    final |= {f"content/{k}": float(v) for k, v in terms.content.items()}
    final |= {f"style/{k}": float(v) for k, v in terms.style.items()}
    return Stylization(
        image=rgb_to_image(rgb),
        seed=seed,
        runtime=runtime.describe(),
        losses=losses,
        final=final,
        style_weight=loss.style_weight,
        seconds=time.perf_counter() - started,
        tensor=x,
        events=events,
        stopped="; ".join(stopped) or None,
    )


@dataclass(frozen=True)
class Level:
    """One coarse-to-fine level: long sides of the output and of the style images."""

    size: int
    style_size: int
    iterations: int


def min_input_side(layer_names: Sequence[str], used: Iterable[str]) -> int:
    """The shortest image side that reaches the deepest of ``used`` in a VGG: every 2×2
    pooling before it halves the feature map, which must keep at least one position."""
    deepest = max(layer_names.index(name) for name in used)
    return 2 ** sum(1 for name in layer_names[:deepest] if name.startswith("pool"))


def plan_levels(
    options: StyleOptions,
    content: Image.Image | torch.Tensor,
    styles: Sequence[Image.Image | torch.Tensor],
    layer_names: Sequence[str],
    runtime: Runtime | None = None,
    names: Sequence[str] | None = None,
) -> list[Level]:
    """The levels of a run, each checked before any work: every image's short side at every
    level reaches the deepest layer used, and (on the CPU) each level fits in memory.

    ``names``: how messages call the content and style images (default: by role). Raises
    :class:`OptionError` naming the image, the level and the option to change.
    """
    if names is None:
        names = ["the content image"] + [
            "the style image" if len(styles) == 1 else f"style image {n}"
            for n in range(1, len(styles) + 1)
        ]
    minimum = min_input_side(layer_names, [*options.content_layers, *options.style_layers])
    levels = []
    count = options.scales
    for index, (size, iterations) in enumerate(
        zip(options.level_sizes(), options.level_iterations()), start=1
    ):
        where = f" at level {index} of {count}" if count > 1 else ""
        style_size = max(1, round(size * options.style_scale))
        width, height = scaled_size(image_size(content), long_side=size)
        if min(width, height) < minimum:
            needed = _long_side_for(image_size(content), minimum) << (count - index)
            raise OptionError(
                f"{names[0]} would be {width}×{height} px{where} (--size {size}): the network"
                f" needs at least {minimum} px on the short side; it needs --size {needed} or more"
                + (" (or fewer --scales)" if count > 1 else "")
            )
        target_pixels = width * height
        for number, style in enumerate(styles, start=1):
            style_width, style_height = scaled_size(image_size(style), long_side=style_size)
            if min(style_width, style_height) < minimum:
                needed = _long_side_for(image_size(style), minimum)
                raise OptionError(
                    f"{names[number]} would be {style_width}×{style_height} px{where} (--size"
                    f" {size} × --style-scale {options.style_scale:g}): the network needs at"
                    f" least {minimum} px on the short side; it needs a style size (--size ×"
                    f" --style-scale) of {needed} px or more"
                )
            target_pixels = max(target_pixels, style_width * style_height)
        if runtime is None or runtime.device.type == "cpu":  # the model is of host memory
            precision = runtime.precision if runtime is not None else "fp32"
            history = min(iterations, LBFGS_HISTORY) if options.optimizer == "lbfgs" else 2
            needed_bytes = stylization_bytes(width * height, target_pixels, history, precision)
            check_fits(needed_bytes, f"a {width}×{height} px output" + where)
        levels.append(Level(size, style_size, iterations))
    return levels


def _long_side_for(size: tuple[int, int], short: int) -> int:
    """The smallest long side that gives an image of this aspect a short side of ``short``."""
    width, height = size
    long_side = math.ceil(short * max(width, height) / min(width, height))
    while min(scaled_size(size, long_side=long_side)) < short:  # rounding
        long_side += 1
    return long_side


def _name(source: object, role: str) -> str:
    """How messages call an image: its role, and its file name where it has one."""
    return f"{role} {source}" if isinstance(source, (str, Path)) else role


def _blend_weights(blend: Sequence[float] | None, count: int) -> list[float]:
    if blend is None:
        return [1.0 / count] * count
    if len(blend) != count:
        raise OptionError(f"{len(blend)} style blend weights for {count} style images")
    total = sum(blend)
    if total <= 0:
        raise OptionError("style blend weights must not all be zero")
    return [w / total for w in blend]


def _features(
    model: VGG, x: torch.Tensor, layers: list[str], runtime: Runtime
) -> dict[str, torch.Tensor]:
    x = x.contiguous(memory_format=runtime.memory_format)
    if runtime.precision == "fp32":
        return model(x, layers)
    # The first conv runs in fp32 even under autocast: its input is the image being optimised,
    # and bf16 rounds 0-255 pixel values to steps of up to 1, hiding the small moves L-BFGS makes
    # (on a small net its first step left the loss unchanged, the curvature estimate was empty
    # and the next step exploded). On VGG-19 at 512 px it moved bf16's loss after 500 iterations
    # from +0.49% to -0.07% of fp32's at no measurable cost per iteration (make bench).
    chain = chain_of(model)
    first_name, first = chain[0]
    x = first(x)
    out = {first_name: x} if first_name in layers else {}
    rest = [name for name in layers if name != first_name]
    if rest:
        with runtime.autocast():
            out.update(run_chain(chain[1:], x, rest))
    return out


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
        k: v.float() for k, v in _features(model, content_x, layers, runtime).items()
    }
    positions = {name: f.shape[2] * f.shape[3] for name, f in content_features.items()}
    # Several styles: the target is the blend of their Grams. With weights summing to 1 this has
    # the same gradient as the weighted sum of separate style losses, at the cost of one.
    grams: dict[str, torch.Tensor] = {}
    for weight, style_rgb in zip(blend, style_rgbs):
        style_x = prep.from_rgb(style_rgb).to(runtime.device)
        features = _features(model, style_x, list(options.style_layers), runtime)
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


def initial_image(
    init: str | ImageSource, content_rgb: torch.Tensor, prep: Preprocessing, seed: int
) -> torch.Tensor:
    """The starting point in network input space: white noise (the paper), the content image,
    or an image (file, PIL image, array or tensor) resized to the content's size."""
    if init == "noise":
        generator = torch.Generator().manual_seed(seed)
        rgb = torch.rand(content_rgb.shape, generator=generator)
    elif init == "content":
        rgb = content_rgb.clone()
    else:
        rgb = load_rgb(init)
        rgb = F.interpolate(
            rgb, size=content_rgb.shape[2:], mode="bicubic", antialias=True, align_corners=False
        ).clamp(0, 1)
    return prep.from_rgb(rgb)


def evaluate(
    model: VGG, loss: GatysLoss, x: torch.Tensor, runtime: Runtime, grad: bool = False
) -> LossTerms:
    """The loss terms at image ``x`` (network in the runtime's precision, loss in fp32)."""
    with torch.set_grad_enabled(grad):
        return loss(_features(model, x, loss.layers, runtime), x)


@dataclass
class GradientScale:
    """The factor on the gradients flowing back through an fp16 network.

    fp16's range ends at 65504: the gradients are scaled down (and the pixel gradient scaled
    back up) by a factor that backs off whenever they overflow and grows again after
    ``growth_interval`` evaluations without overflow — torch.amp.GradScaler's rule. Departures
    from GradScaler's defaults (backoff 0.5, interval 2000): an overflow here costs a whole
    re-evaluation, not a skipped training step, so the backoff is 1/16; and a run is hundreds of
    evaluations, not millions, so the growth interval is 50. Other precisions keep 1.
    """

    value: float = 1.0
    backoff: float = 2.0**-4
    growth: float = 2.0
    growth_interval: int = 50
    max_retries: int = 12
    good_steps: int = 0

    def overflowed(self) -> None:
        """Back off after a non-finite gradient."""
        self.value *= self.backoff
        self.good_steps = 0

    def succeeded(self) -> None:
        """Count an evaluation without overflow; grow after ``growth_interval`` of them."""
        self.good_steps += 1
        if self.good_steps >= self.growth_interval:
            self.value *= self.growth
            self.good_steps = 0


def backward_to_pixels(
    model: VGG, loss: GatysLoss, x: torch.Tensor, runtime: Runtime, scale: GradientScale
) -> LossTerms:
    """The loss terms at ``x`` (a leaf that requires grad); their gradient replaces ``x.grad``.

    A loss that is not finite is returned as it is, with ``x.grad`` None (the optimiser's guard
    rejects the step); in fp16 a gradient that overflows is recomputed at a smaller scale, and
    after ``scale.max_retries`` overflows is returned non-finite.
    """
    for _ in range(scale.max_retries):
        x.grad = None
        terms = evaluate(model, loss, x, runtime, grad=True)
        if not torch.isfinite(terms.total):
            return terms
        (terms.total * scale.value).backward()
        assert x.grad is not None
        if runtime.precision != "fp16":
            break
        if torch.isfinite(x.grad).all():
            scale.succeeded()
            break
        scale.overflowed()
    if scale.value != 1.0:
        x.grad /= scale.value
    return terms


def optimize(
    model: VGG,
    loss: GatysLoss,
    start: torch.Tensor,
    iterations: int,
    options: StyleOptions,
    prep: Preprocessing,
    runtime: Runtime,
    callbacks: Sequence[StepCallback] = (),
) -> Minimized:
    """Minimise ``loss`` over the pixels of ``start`` for ``iterations`` steps (one loss
    evaluation each), guarded against blow-ups (see :mod:`normstyle.style.optimizer`).

    Returns the best image found (``.x``, fp32 in network input space), its loss terms
    (``.extra``), the loss after each iteration and what the guard did.
    """
    scale = GradientScale()

    def objective(
        x: torch.Tensor, need_grad: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None, LossTerms]:
        if not need_grad:
            terms = evaluate(model, loss, x, runtime)
            return terms.total.detach(), None, terms
        leaf = x.detach().requires_grad_(True)
        terms = backward_to_pixels(model, loss, leaf, runtime, scale).detach()
        return terms.total, leaf.grad, terms

    if options.optimizer == "lbfgs":
        # No line search, one evaluation per iteration (see style/optimizer.py).
        stepper: PixelOptimizer = LBFGS(prep.pixel_unit, options.step_size(), LBFGS_HISTORY)
    else:
        stepper = Adam(prep.pixel_unit, options.step_size())

    report_every = max(1, iterations // 10)
    with tqdm(
        total=iterations,
        desc=f"stylize {tuple(start.shape[2:])}",
        unit="it",
        disable=not options.progress,
        dynamic_ncols=True,
    ) as bar:

        def on_iteration(iteration: int, x: torch.Tensor, value: float, terms: Any) -> None:
            bar.update(1)
            bar.set_postfix(loss=f"{value:.4g}", refresh=False)
            if options.verbose and (iteration % report_every == 0 or iteration == 1):
                tqdm.write(format_terms(iteration, terms, loss))
            for callback in callbacks:
                callback(iteration, x, terms)

        return minimize(objective, start.float(), iterations, stepper, on_iteration)


def format_terms(iteration: int, terms: LossTerms, loss: GatysLoss) -> str:
    """One line: total, weighted content and style terms per layer."""
    parts = [f"iter {iteration:5d}  total {float(terms.total):.4g}"]
    for name, value in terms.content.items():
        weighted = loss.content_weight * loss.content_layers[name] * float(value)
        parts.append(f"content {name} {weighted:.3g}")
    for name, value in terms.style.items():
        parts.append(
            f"style {name} {loss.style_weight * loss.style_layers[name] * float(value):.3g}"
        )
    if terms.tv is not None:
        parts.append(f"tv {loss.tv_weight * float(terms.tv):.3g}")
    return "  ".join(parts)


def intermediate_paths(options: StyleOptions, output: str | Path) -> list[Path]:
    """Where ``save_every`` writes: ``OUT_<step>.<ext>`` beside ``output`` (not at the end)."""
    if not options.save_every:
        return []
    output = Path(output)
    total = sum(options.level_iterations())
    width = len(str(total))
    return [
        output.with_name(f"{output.stem}_{step:0{width}d}{output.suffix}")
        for step in range(options.save_every, total, options.save_every)
    ]


def _saver(
    options: StyleOptions,
    prep: Preprocessing,
    output: str | Path | None,
    offset: int = 0,
    written: list[Path] | None = None,
) -> StepCallback | None:
    if not options.save_every or output is None:
        return None
    paths = {
        int(path.stem.rpartition("_")[2]): path for path in intermediate_paths(options, output)
    }

    def save(iteration: int, x: torch.Tensor, _terms: LossTerms) -> None:
        path = paths.get(offset + iteration)
        if path is not None:
            save_image(prep.tensor_to_image(x.float().cpu()), path)
            if written is not None:
                written.append(path)

    return save
