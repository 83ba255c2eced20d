"""Pieces shared by the sub-commands."""

from __future__ import annotations

import argparse
import sys
from argparse import SUPPRESS
from typing import Any, NoReturn

from normstyle.errors import OptionError

_stdout_failed: list[str] = []


def say(*values: object, sep: str = " ", end: str = "\n") -> None:
    """``print`` for results on stdout. If stdout cannot take them (full disk, closed pipe),
    the work that produced them is still done: one warning on stderr, and no error exit."""
    try:
        print(*values, sep=sep, end=end, flush=True)
    except (OSError, ValueError) as error:
        if not _stdout_failed:
            _stdout_failed.append(str(error))
            reason = getattr(error, "strerror", None) or error
            print(f"normstyle: warning: could not print the results ({reason})", file=sys.stderr)


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line on stderr (exit code 2)."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message} (see --help)", file=sys.stderr)
        raise SystemExit(2)


def positive_int(text: str) -> int:
    """argparse type: an integer > 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got '{text}'") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {value}")
    return value


def short_side(text: str) -> int:
    """argparse type: an image short side in px, at least 32 (VGG's five 2×2 poolings)."""
    from normstyle.io.folders import MIN_SHORT_SIDE

    value = positive_int(text)
    if value < MIN_SHORT_SIDE:
        raise argparse.ArgumentTypeError(
            f"must be at least {MIN_SHORT_SIDE} px (VGG's five 2×2 poolings), got {value}"
        )
    return value


def non_negative_float(text: str) -> float:
    """argparse type: a finite float ≥ 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got '{text}'") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number ≥ 0, got {text}")
    return value


def positive_float(text: str) -> float:
    """argparse type: a finite float > 0."""
    value = non_negative_float(text)
    if value == 0:
        raise argparse.ArgumentTypeError("must be positive, got 0")
    return value


def _weight(text: str, where: str) -> float:
    """A finite number ≥ 0 (a weight), or an argparse error naming ``where``."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad weight '{text}' in '{where}'") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(
            f"weight '{text}' in '{where}' must be a finite number ≥ 0"
        )
    return value


def layer_weights(text: str) -> dict[str, float]:
    """Parse ``relu1_1,relu2_1`` (equal weights summing to 1) or ``relu4_2:1,relu5_2:0.5``.
    Weights must be finite and ≥ 0; a layer may appear once."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not items:
        raise argparse.ArgumentTypeError("expected layer names, e.g. relu1_1,relu2_1")
    weights: dict[str, float] = {}
    for item in items:
        name, _, weight = item.partition(":")
        name = name.strip()
        if not name:
            raise argparse.ArgumentTypeError(f"a layer name is missing in '{item}'")
        if name in weights:
            raise argparse.ArgumentTypeError(f"layer '{name}' is given twice in '{text}'")
        weights[name] = _weight(weight, item) if weight else 1.0 / len(items)
    return weights


def float_list(text: str) -> tuple[float, ...]:
    """Parse ``0.7,0.3``: weights, each a finite number ≥ 0."""
    parts = [part.strip() for part in text.split(",")]
    if not all(parts):
        raise argparse.ArgumentTypeError(f"expected numbers separated by commas, got '{text}'")
    return tuple(_weight(part, text) for part in parts)


def seed(text: str) -> int:
    """argparse type: a random seed, a whole number from 0 to 2^64 − 1 (what torch accepts)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got '{text}'") from None
    if not 0 <= value < 2**64:
        raise argparse.ArgumentTypeError(f"must be from 0 to 2^64 − 1, got {text}")
    return value


class _Renamed(argparse.Action):
    """An option that was renamed: a one-line usage error naming the new name."""

    def __init__(self, *args: Any, new: str = "", **kwargs: Any) -> None:
        self.new = new
        super().__init__(*args, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> None:
        parser.error(f"{self.option_strings[0]} is now {self.new} (the image's short side)")


def add_choice(
    parser: argparse.ArgumentParser,
    flag: str,
    choices: tuple[str, ...],
    default: str | None,
    help: str,
) -> None:
    """An option that takes one of ``choices``; its help ends with the default, if any."""
    shown = f" [{default}]" if default is not None else ""
    parser.add_argument(flag, choices=choices, default=default, help=help + shown)


def add_folder_options(parser: argparse.ArgumentParser, default_weights: str) -> None:
    """The options of the commands that run a network over a folder of images (``normalize``,
    ``stats``), defined once: --weights, --images, --short-side, --limit, --pooling and
    --no-progress."""
    parser.add_argument(
        "--weights", default=default_weights, help=f"weight source id or file [{default_weights}]"
    )
    parser.add_argument("--images", required=True, help="folder of images (searched recursively)")
    parser.add_argument(
        "--short-side",
        type=short_side,
        default=256,
        help="each image is resized to this short side in px, as for ImageNet [256]",
    )
    parser.add_argument("--size", nargs="?", action=_Renamed, new="--short-side", help=SUPPRESS)
    parser.add_argument("--limit", type=positive_int, help="use at most N images (sorted by path)")
    add_choice(
        parser, "--pooling", ("max", "avg"), "max", "the network's pooling (max: as trained)"
    )
    parser.add_argument(
        "--no-progress", dest="progress", action="store_false", help="no progress bar"
    )


def image_folder(args: argparse.Namespace) -> Any:
    """The :class:`~normstyle.io.folders.ImageFolder` that --images, --short-side and --limit
    name."""
    from normstyle.io.folders import ImageFolder

    return ImageFolder(args.images, args.short_side, args.limit)


def require(condition: bool, message: str) -> None:
    """Raise :class:`OptionError` (exit 2) unless ``condition``."""
    if not condition:
        raise OptionError(message)
