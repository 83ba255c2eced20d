"""Pieces shared by the sub-commands."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
from collections.abc import Iterator
from typing import NoReturn

from normstyle.errors import OptionError


@contextlib.contextmanager
def final_write(finish: bool = True) -> Iterator[None]:
    """Around the writing of a command's results: Ctrl-C and SIGTERM wait until the files are
    in place (never half a set of them), and with ``finish`` the command then completes (its
    summary printed, exit 0) rather than report an interruption that lost nothing.
    ``normstyle.cli.main`` restores the handlers when the command returns."""
    signals = {signal.SIGINT, signal.SIGTERM}
    try:
        signal.pthread_sigmask(signal.SIG_BLOCK, signals)
        blocked = True
    except (AttributeError, ValueError, OSError):  # not POSIX, or not the main thread
        blocked = False
    written = False
    try:
        yield
        written = True
    finally:
        if written and finish:
            for signum in signals:
                with contextlib.suppress(ValueError, OSError):
                    signal.signal(signum, signal.SIG_IGN)  # pending ones are dropped
        if blocked:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, signals)


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
    value = positive_int(text)
    if value < 32:
        raise argparse.ArgumentTypeError(
            f"must be at least 32 px (VGG's five 2×2 poolings), got {value}"
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


def require(condition: bool, message: str) -> None:
    """Raise :class:`OptionError` (exit 2) unless ``condition``."""
    if not condition:
        raise OptionError(message)
