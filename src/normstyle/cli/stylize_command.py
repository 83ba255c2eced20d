"""Gatys et al. (2016) style transfer. Images may be files or builtin:NAME
(builtin:grace_hopper, builtin:swirls); the options are derived from StyleOptions.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
import typing
from collections.abc import Iterator
from dataclasses import fields
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from normstyle.cli.common import (
    float_list,
    layer_weights,
    non_negative_float,
    positive_float,
    positive_int,
    say,
    seed,
)
from normstyle.io.files import final_write
from normstyle.io.save import save_image
from normstyle.style.intermediates import check_outputs
from normstyle.style.options import StyleOptions
from normstyle.style.transfer import run


def count_or_auto(text: str) -> int | str:
    """argparse type: 'auto' or a positive whole number."""
    return "auto" if text.strip() == "auto" else positive_int(text)


def _non_negative_int(text: str) -> int:
    value = int(non_negative_float(text))
    if str(value) != text.strip():
        raise argparse.ArgumentTypeError(f"expected a whole number ≥ 0, got '{text}'")
    return value


# How each StyleOptions field is parsed on the command line (bools are flags).
_PARSERS: dict[str, Any] = {
    "long_side": positive_int,
    "iterations": count_or_auto,
    "learning_rate": positive_float,
    "init": str,
    "content_weight": non_negative_float,
    "style_weight": non_negative_float,
    "content_layers": layer_weights,
    "style_layers": layer_weights,
    "tv_weight": non_negative_float,
    "style_scale": positive_float,
    "style_blend": float_list,
    "weights": str,
    "seed": seed,
    "save_every": _non_negative_int,
    "scales": count_or_auto,
    "coarse_iterations": _non_negative_int,
    "masks": str,
    "style_masks": str,
    "max_memory": str,
    "tile": positive_int,
}
# Options that take one value per style image: the masks after the flag, the style layers by
# repeating it (a list after the flag would swallow the style images that follow it).
_PER_STYLE = {"masks", "style_masks"}
_REPEATED = {"style_layers"}
_GROUPS = {
    "output": ("long_side", "iterations", "seed", "save_every", "progress", "verbose"),
    "loss": (
        "content_weight",
        "style_weight",
        "content_layers",
        "style_layers",
        "tv_weight",
        "style_scale",
        "style_blend",
    ),
    "artist controls (Gatys et al. 2017)": ("masks", "style_masks", "preserve_colors"),
    "optimisation": ("optimizer", "learning_rate", "init", "scales", "coarse_iterations", "paper"),
    "network": ("weights", "normalize", "pooling", "device", "precision", "convolution"),
    "memory": ("max_memory", "tile"),
}


def _show(value: object) -> str:
    if isinstance(value, dict):
        return ",".join(f"{k}:{v:g}" for k, v in value.items())
    return str(value)


NAME = "stylize"
HELP = "stylise a content image with one or more style images"


def add_options(parser: argparse.ArgumentParser) -> None:
    """The options of ``stylize``, derived from :class:`StyleOptions`."""
    parser.add_argument("content", help="content image")
    parser.add_argument("styles", nargs="+", metavar="style", help="style image(s)")
    parser.add_argument(
        "-o", "--output", required=True, help="output image (.png, .jpg, .webp, .tif, .bmp)"
    )
    defaults = StyleOptions()
    hints = typing.get_type_hints(StyleOptions)
    by_name = {f.name: f for f in fields(StyleOptions)}
    for title, names in _GROUPS.items():
        group = parser.add_argument_group(title)
        for name in names:
            spec = by_name[name]
            flag = spec.metadata.get("flag") or "--" + name.replace("_", "-")
            default = getattr(defaults, name)
            help_text = spec.metadata["help"]
            if hints[name] is bool:
                if default:
                    group.add_argument(
                        f"--no-{name.replace('_', '-')}",
                        dest=name,
                        action="store_false",
                        help=f"do not {help_text}",
                    )
                else:
                    group.add_argument(flag, action="store_true", help=help_text)
                continue
            kwargs: dict[str, Any] = {"dest": name, "default": argparse.SUPPRESS}
            choices = (
                typing.get_args(hints[name])
                if typing.get_origin(hints[name]) is typing.Literal
                else ()
            )
            if choices:
                kwargs["choices"] = choices
            else:
                kwargs["type"] = _PARSERS[name]
            if name in _PER_STYLE:
                kwargs["nargs"] = "+"
                kwargs["metavar"] = "MASK"
            if name in _REPEATED:
                kwargs["action"] = "append"
                kwargs["metavar"] = "LAYERS"
                help_text += " (repeat the option: once per style image, in their order)"
            shown = "" if default is None else _show(default)
            help_text = help_text.replace("%", "%%")  # argparse formats help with %
            group.add_argument(
                flag, help=f"{help_text}" + (f" [{shown}]" if shown else ""), **kwargs
            )


@contextlib.contextmanager
def optimiser_log(verbose: bool) -> Iterator[None]:
    """Route the library's log (logger ``normstyle``: steps the optimiser's guard rejected) to
    stderr above the progress bar with --verbose; without it, a summary follows the run."""

    class ToTqdm(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            tqdm.write(f"normstyle stylize: {record.getMessage()}", file=sys.stderr)

    logger = logging.getLogger("normstyle")
    handler = ToTqdm() if verbose else logging.NullHandler()
    propagate = logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def handle(args: argparse.Namespace) -> int:
    """Run ``stylize``."""
    names = {f.name for f in fields(StyleOptions)}
    given = {k: v for k, v in vars(args).items() if k in names}
    if "style_layers" in given:  # one set for every style image, or one per style image
        sets = given["style_layers"]
        given["style_layers"] = sets[0] if len(sets) == 1 else sets
    for name in ("masks", "style_masks"):
        if name in given:
            given[name] = tuple(given[name])
    options = StyleOptions(**given)
    # Fail before the long part, not after it: the output and every intermediate image.
    inputs = [args.content, *args.styles, options.init, *(options.masks or ())]
    output = check_outputs(options, args.output, [*inputs, *(options.style_masks or ())])
    written: list[Path] = []
    try:
        with optimiser_log(options.verbose):
            result = run(args.content, args.styles, options, output=output, written=written)
    except KeyboardInterrupt as stop:
        stop.kept = list(written)  # type: ignore[attr-defined]  # main() reports them
        raise
    with final_write():
        save_image(result.image, output)
    width, height = result.image.size
    say(
        f"wrote {output} ({width}×{height}, {len(result.losses)} iterations,"
        + (f" in {result.tiles}," if result.tiles else "")
        + f" {result.runtime}, {result.seconds:.1f} s, seed {result.seed},"
        f" loss {result.final['total']:.4g})"
    )
    if result.events:
        print(
            f"normstyle stylize: note: the optimiser rejected {len(result.events)} step(s) that"
            " made the loss blow up or would not lower it (--verbose lists them)",
            file=sys.stderr,
        )
    if result.stopped:
        print(f"normstyle stylize: warning: {result.stopped}", file=sys.stderr)
    return 0
