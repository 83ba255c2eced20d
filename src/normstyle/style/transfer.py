"""The optimisation of Gatys et al. (2016): start from an image, minimise the total loss over its
pixels with L-BFGS (or Adam), in the network's input space; optionally coarse-to-fine.

This module orchestrates; each step has its own module: the levels and their checks
(``levels``), the loss targets (``targets``), the start image (``initial``), the loop
(``loop``, with ``precision`` and ``optimizer``) and intermediate images (``intermediates``).
"""

from __future__ import annotations

import functools
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image
from tqdm.auto import tqdm

from normstyle.errors import OptionError, check_names
from normstyle.io.decode import ImageSource, decoded, image_size
from normstyle.io.resize import fit, scaled_size
from normstyle.io.tensors import as_tensor, rgb_to_image
from normstyle.nets.vgg import vgg_layer_names
from normstyle.registry import for_stylization
from normstyle.runtime.allocator import keep_freed_memory
from normstyle.runtime.convolutions import (
    choose_convolutions,
    fastest_precision,
    prepare_winograd,
)
from normstyle.runtime.precision import Runtime, resolve_runtime
from normstyle.style.bands import band_layout, chain_geometry
from normstyle.style.color import (
    grey_projection,
    keep_luminance,
    luminance_image,
    match_color_histogram,
    matched_luminance,
)
from normstyle.style.guidance import check_mask_count, decoded_mask, resized_mask
from normstyle.style.initial import STARTS, initial_image
from normstyle.style.intermediates import intermediate_saver
from normstyle.style.levels import plan_levels
from normstyle.style.loop import StepCallback, optimize
from normstyle.style.options import StyleOptions
from normstyle.style.targets import blend_weights, build_loss


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
    tiles: str | None = None  # how the last level was cut to fit memory ("12 bands of 256 rows")


def stylize(
    content: ImageSource, style: ImageSource | Sequence[ImageSource], **options: Any
) -> Image.Image:
    """Stylise ``content`` with one or more ``style`` images; returns an RGB PIL image.

    Images may be paths (or ``builtin:NAME``), PIL images, numpy arrays, or RGB float tensors
    in [0, 1] (see :func:`normstyle.io.decode.decoded`).
    ``options`` are the fields of :class:`StyleOptions` (e.g. ``long_side=256, iterations=300``).
    """
    return run(content, style, StyleOptions.from_kwargs(**options)).image


def run(
    content: ImageSource,
    style: ImageSource | Sequence[ImageSource],
    options: StyleOptions,
    on_step: StepCallback | None = None,
    output: str | Path | None = None,
    written: list[Path] | None = None,
    models: dict[tuple, torch.nn.Module] | None = None,
    interrupt: Callable[[], None] | None = None,
) -> Stylization:
    """Run one stylisation. ``on_step(iteration, image, terms)`` is called after every step;
    ``output``, if given, is where ``save_every`` writes its intermediate images (next to it),
    each appended to ``written`` as soon as it exists. ``models``: where a long-lived caller
    (the web page) keeps the networks it has built, so that the next run reuses them.
    ``interrupt``: called between the phases of the run and before every evaluation of the
    loss; whatever it raises ends the run there (the web page's Cancel)."""
    check = interrupt or (lambda: None)
    options.validate()
    started = time.perf_counter()
    keep_freed_memory()  # the loop's tensors reused, not faulted in anew each iteration
    styles = list(style) if isinstance(style, (list, tuple)) else [style]
    if not styles:
        raise OptionError("at least one style image is needed")
    blend = blend_weights(options.style_blend, len(styles))
    seed = options.seed if options.seed is not None else random.randrange(2**31)
    runtime = resolve_runtime(options.device, options.precision)
    # Decode each file once (before the network loads, so a bad image fails fast); every
    # coarse-to-fine level resizes from the decoded image.
    content_source, style_sources = content, styles
    content = decoded(content)
    styles = [decoded(s) for s in styles]
    init = options.init if options.init in STARTS else decoded(options.init)
    check_mask_count(options.masks, len(styles), "masks")
    check_mask_count(options.style_masks, len(styles), "style masks")
    masks = _decoded_masks(options.masks, "mask")
    style_masks = _decoded_masks(options.style_masks, "style mask")

    check()
    weights = for_stylization(options.weights, options.normalize)
    layer_names = vgg_layer_names(weights.arch)
    options.style_layers_per_style(len(styles))  # one set, or one per style image
    check_names([*options.content_layers, *options.style_layer_names()], layer_names)
    # Every level's images are checked (size, memory) before the network is built.
    names = [_name(content_source, "the content image")] + [
        _name(source, "the style image" if len(styles) == 1 else f"style image {number}")
        for number, source in enumerate(style_sources, start=1)
    ]
    # Where bf16 is native, "auto" still runs it only if it is faster here (timed below, once
    # the network exists); the memory check meanwhile assumes fp32, which needs more.
    timed_precision = options.precision == "auto" and runtime.precision == "bf16"
    if timed_precision and runtime.device.type == "cpu":
        runtime = Runtime(runtime.device, "fp32")
    else:
        timed_precision = False
    levels = plan_levels(options, content, styles, layer_names, runtime, names, weights.arch)
    key = (options.weights, options.normalize, options.pooling, str(runtime.device))
    model = models.get(key) if models is not None else None
    if model is None:
        model = weights.build(pooling=options.pooling)
        model = model.to(runtime.device, memory_format=runtime.memory_format)
        prepare_winograd(model)  # switched off: plain convs until chosen per level
        if models is not None:
            models[key] = model
    prep = weights.preprocessing
    if timed_precision:
        width, height = scaled_size(image_size(content), long_side=levels[-1].long_side)
        example = torch.zeros(1, 3, height, width).contiguous(memory_format=runtime.memory_format)
        used = [*options.content_layers, *options.style_layer_names()]
        precision = fastest_precision(model, example, used, options.convolution)
        runtime = Runtime(runtime.device, precision)

    luminance_only = options.preserve_colors == "luminance"
    check()
    x: torch.Tensor | None = None
    losses: list[float] = []
    events: list[str] = []
    stopped: list[str] = []
    tiled: list[str] = []  # how each tiled level was cut
    done = 0
    for level in levels:
        iterations = level.iterations
        content_rgb = as_tensor(fit(content, long_side=level.long_side))
        style_rgbs = [as_tensor(fit(s, long_side=level.style_long_side)) for s in styles]
        if options.preserve_colors == "histogram":
            style_rgbs = [match_color_histogram(s, content_rgb) for s in style_rgbs]
        network_content = content_rgb
        if luminance_only:  # §5.1: the transfer runs on luminance images
            style_rgbs = [matched_luminance(s, content_rgb) for s in style_rgbs]
            network_content = luminance_image(content_rgb)
        height, width = content_rgb.shape[2:]
        level_masks = None if masks is None else [resized_mask(m, (width, height)) for m in masks]
        level_style_masks = (
            None
            if style_masks is None
            else [
                resized_mask(m, (s.shape[3], s.shape[2])) if m is not None else None
                for m, s in zip(style_masks, style_rgbs)
            ]
        )
        loss = build_loss(
            model,
            prep,
            network_content,
            style_rgbs,
            blend,
            options,
            runtime,
            masks=level_masks,
            style_masks=level_style_masks,
            tile=level.tile,
        )
        if x is None:
            # The recoloured start takes the style's colours as the network sees them (after
            # histogram matching: the content's own); luminance-only transfer starts grey.
            palette = [] if luminance_only else style_rgbs
            start = initial_image(
                init, content_rgb, prep, seed, palette, blend, level_masks, level_style_masks
            )
            if luminance_only:
                start = prep.from_rgb(luminance_image(prep.to_rgb(start)))
        else:  # coarse-to-fine: the previous level's result, upsampled, is this level's start
            # Torch's bicubic, not io.resize's Lanczos: this upsamples the optimised image
            # itself, in network space on the run's device, between two levels of one run.
            start = F.interpolate(
                x, size=content_rgb.shape[2:], mode="bicubic", align_corners=False
            )
        check()
        bands = None
        if level.tile is not None:
            geometry = chain_geometry(model, loss.layers)
            height, width = start.shape[2:]
            bands = band_layout(height, level.tile[0], geometry, width, level.tile[1])
            tiled.append(bands.describe())
            if options.verbose or options.progress:
                tqdm.write(
                    f"{width}×{height} px in {bands.describe()} (+ {geometry.halo} px halos)"
                    f" with {level.history} L-BFGS pairs"
                    + (" (--tile)" if options.tile else " to fit the memory budget (--max-memory)"),
                    file=sys.stderr,
                )
        example = start
        if bands is not None:
            rows, columns = bands.largest_input
            example = start[:, :, :rows, :columns]
        _choose_convolutions(model, example, loss.layers, options, runtime)
        recolour = None
        if options.preserve_colors in ("luminance", "luminance-swap"):
            recolour = functools.partial(keep_luminance, content=content_rgb)
        saver = intermediate_saver(options, prep, output, done, written, recolour)
        callbacks = [cb for cb in (on_step, saver) if cb]
        result = optimize(
            model,
            loss,
            start.to(runtime.device),
            iterations,
            options,
            prep,
            runtime,
            callbacks,
            level.rule,
            project=grey_projection(prep.scale, prep.std) if luminance_only else None,
            history=level.history,
            bands=bands,
            interrupt=interrupt,
        )
        x, terms = result.x, result.extra
        losses += result.losses
        events += result.events
        if result.stopped:
            stopped.append(result.stopped)
        done += len(result.losses)  # the next level's steps are numbered on from here
    assert x is not None

    x = x.float().cpu()
    rgb = prep.to_rgb(x).clamp(0, 1)
    if options.preserve_colors in ("luminance", "luminance-swap"):
        # The content's chrominance back: after §5.1's grey transfer, or on a colour one.
        rgb = keep_luminance(rgb, content_rgb)  # the last level's: options.long_side
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
        tiles=tiled[-1] if tiled and levels[-1].tile is not None else None,
    )


def _choose_convolutions(
    model: torch.nn.Module,
    start: torch.Tensor,
    layers: list[str],
    options: StyleOptions,
    runtime: Runtime,
) -> None:
    """Pick each conv's algorithm for this level's image size (see runtime/convolutions.py)."""
    if options.convolution == "direct":
        return
    example = torch.zeros_like(start, dtype=runtime.dtype, device=runtime.device)
    example = example.contiguous(memory_format=runtime.memory_format)
    timings = choose_convolutions(model, example, layers, options.convolution)
    if options.verbose and timings:
        chosen = [f"{t.name} (F{t.tile})" for t in timings if t.chosen == "winograd"]
        ratios = "  ".join(f"{t.name} {t.direct / t.winograd:.2f}×" for t in timings)
        tqdm.write(f"Winograd/direct speed per conv: {ratios}")
        tqdm.write(f"Winograd for: {', '.join(chosen) or 'none'}")


def _decoded_masks(sources: Sequence[Any] | None, role: str) -> list[Any] | None:
    """Each mask decoded once (a None entry, for a style mask, means "all of it")."""
    if sources is None:
        return None
    return [
        None if source is None else decoded_mask(source, f"{role} {number}")
        for number, source in enumerate(sources, start=1)
    ]


def _name(source: object, role: str) -> str:
    """How messages call an image: its role, and its file name where it has one."""
    return f"{role} {source}" if isinstance(source, (str, Path)) else role
