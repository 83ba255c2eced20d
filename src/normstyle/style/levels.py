"""The coarse-to-fine levels of a run, each checked before any work: every image's short side
at every level reaches the deepest layer used, and (on the CPU) each level fits in memory."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from normstyle.errors import OptionError
from normstyle.io.decode import RGB, image_size
from normstyle.io.resize import scaled_size
from normstyle.runtime.memory import memory_budget, plan_level_memory
from normstyle.runtime.precision import Runtime
from normstyle.style.bands import network_geometry
from normstyle.style.lbfgs import LBFGS_HISTORY
from normstyle.style.options import StyleOptions
from normstyle.style.stopping import StoppingRule


@dataclass(frozen=True)
class Level:
    """One coarse-to-fine level: long sides of the output and of the style images."""

    long_side: int
    style_long_side: int
    iterations: int  # exactly, or at most where there is a ``rule``
    rule: StoppingRule | None = None  # the stopping rule that may end the level sooner
    history: int = LBFGS_HISTORY  # L-BFGS curvature pairs kept (fewer where memory is short)
    tile: tuple[int, int] | None = None  # own (rows, columns) of each tile, where tiled


def min_input_side(layer_names: Sequence[str], used: Iterable[str]) -> int:
    """The shortest image side that reaches the deepest of ``used`` in a VGG: every 2×2
    pooling before it halves the feature map, which must keep at least one position."""
    deepest = max(layer_names.index(name) for name in used)
    return 2 ** sum(1 for name in layer_names[:deepest] if name.startswith("pool"))


def plan_levels(
    options: StyleOptions,
    content: RGB,
    styles: Sequence[RGB],
    layer_names: Sequence[str],
    runtime: Runtime | None = None,
    names: Sequence[str] | None = None,
    arch: str = "vgg19",
) -> list[Level]:
    """The levels of a run, each checked before any work: every image's short side at every
    level reaches the deepest layer used, and (on the CPU) each level fits in the memory budget
    (``--max-memory``): where the whole image does not, with a shorter L-BFGS history and in
    bands (see :func:`normstyle.runtime.memory.plan_level_memory`); ``--tile`` forces bands.

    ``names``: how messages call the content and style images (default: by role). Raises
    :class:`OptionError` naming the image, the level and the option to change.
    """
    if names is None:
        names = ["the content image"] + [
            "the style image" if len(styles) == 1 else f"style image {n}"
            for n in range(1, len(styles) + 1)
        ]
    used = [*options.content_layers, *options.style_layer_names()]
    minimum = min_input_side(layer_names, used)
    geometry = network_geometry(arch, options.pooling, used)
    budget = memory_budget(options.max_memory_bytes())
    levels = []
    count = options.level_count()
    for index, (size, (iterations, rule)) in enumerate(
        zip(options.level_long_sides(), options.level_budgets()), start=1
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
        history = min(iterations, LBFGS_HISTORY) if options.optimizer == "lbfgs" else 2
        tile = None
        if runtime is None or runtime.device.type == "cpu":  # the model is of host memory
            precision = runtime.precision if runtime is not None else "fp32"
            plan = plan_level_memory(
                width,
                height,
                target_pixels,
                history,
                precision,
                budget,
                geometry.stride,
                geometry.halo,
                options.tile,
                f"a {width}×{height} px output" + where,
            )
            if options.optimizer == "lbfgs":
                history = plan.history
            tile = plan.tile
        elif options.tile is not None and (options.tile < height or options.tile < width):
            tile = (min(options.tile, height), min(options.tile, width))
        levels.append(Level(size, style_size, iterations, rule, history, tile))
    return levels


def _long_side_for(size: tuple[int, int], short: int) -> int:
    """The smallest long side that gives an image of this aspect a short side of ``short``."""
    width, height = size
    long_side = math.ceil(short * max(width, height) / min(width, height))
    while min(scaled_size(size, long_side=long_side)) < short:  # rounding
        long_side += 1
    return long_side
