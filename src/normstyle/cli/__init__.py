"""The ``normstyle`` command: ``main(argv)`` runs in-process, so tests call it directly.

Library errors become one line on stderr: option errors exit 2 (like usage errors), input and
runtime errors exit 1, Ctrl-C exits 130 and SIGTERM 143 — also while the libraries are still
being imported, which is why this module imports nothing heavy at its top. Set
NORMSTYLE_DEBUG=1 for tracebacks.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
from collections.abc import Sequence
from types import FrameType
from typing import Any

from normstyle import __version__

EXIT_INTERRUPTED = 130
EXIT_TERMINATED = 143  # 128 + SIGTERM, what shells report for a process killed by it


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised like Ctrl-C so that the same clean-up runs (no half-written output)."""


def make_parser() -> argparse.ArgumentParser:
    """The argument parser of ``normstyle`` and its sub-commands."""
    from normstyle.cli import (
        batch_command,
        lab_command,
        normalize_command,
        serve_command,
        stats_command,
        stylize_command,
        weights_command,
    )
    from normstyle.cli.common import OneLineParser

    parser = OneLineParser(
        prog="normstyle",
        description="Gatys et al. style transfer on a properly normalised VGG-19.",
    )
    parser.add_argument("--version", action="version", version=f"normstyle {__version__}")
    subparsers = parser.add_subparsers(
        dest="command", metavar="COMMAND", required=True, parser_class=OneLineParser
    )
    for command in (
        stylize_command,
        normalize_command,
        stats_command,
        lab_command,
        weights_command,
        serve_command,
        batch_command,
    ):
        # Each command module says its name and help (its docstring is the description), adds
        # its options and handles its parsed arguments (``weights``: one handler per action).
        sub = subparsers.add_parser(command.NAME, help=command.HELP, description=command.__doc__)
        command.add_options(sub)
        if hasattr(command, "handle"):
            sub.set_defaults(handler=command.handle)
    return parser


def main(argv: Sequence[str] | None = None, pending: list[int] | None = None) -> int:
    """Run ``normstyle`` with ``argv`` (default: ``sys.argv[1:]``); returns the exit code.

    ``pending``: signals noted before this call (by the console entry point), acted on here.
    """
    command = "normstyle"
    pending = [] if pending is None else pending
    # While torch and the rest are imported, Ctrl-C and SIGTERM are only noted: an exception
    # raised inside torch's C++ initialisers aborts the process (pybind11's "terminate called").
    previous_int = _set_handler(signal.SIGINT, lambda signum, _frame: pending.append(signum))
    previous_term = _set_handler(signal.SIGTERM, lambda signum, _frame: pending.append(signum))
    _tolerant_stdout()
    try:
        try:
            parser = make_parser()
        finally:
            _set_handler(signal.SIGINT, signal.default_int_handler)
            _set_handler(signal.SIGTERM, _raise_terminated)
        if pending:
            raise Terminated() if pending[-1] == signal.SIGTERM else KeyboardInterrupt()
        try:
            args = parser.parse_args(argv)
        except SystemExit as exit_:  # --help, --version, usage errors
            return int(exit_.code or 0)
        command = f"normstyle {args.command}"
        return _run(args, command)
    except KeyboardInterrupt as stop:
        terminated = isinstance(stop, Terminated)
        kept: list[Any] = getattr(stop, "kept", [])
        what = "terminated" if terminated else "interrupted"
        said: str | None = getattr(stop, "detail", None)  # a command's own account
        if said:
            detail = said
        elif kept:
            names = str(kept[0]) if len(kept) == 1 else f"{kept[0]} … {kept[-1]}"
            detail = f"kept {len(kept)} intermediate image(s) ({names}); final output not written"
        else:
            detail = "nothing written"
        _close_progress_bars()
        print(f"{command}: {what}; {detail}", file=sys.stderr)
        return EXIT_TERMINATED if terminated else EXIT_INTERRUPTED
    finally:
        _set_handler(signal.SIGINT, previous_int)
        _set_handler(signal.SIGTERM, previous_term)


def _tolerant_stdout() -> None:
    """Characters the terminal cannot show (×, μ in tables) are escaped, not a crash."""
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure is not None:
        with contextlib.suppress(ValueError, OSError, TypeError):
            reconfigure(errors="backslashreplace")


def _run(args: argparse.Namespace, command: str) -> int:
    from normstyle.errors import NormstyleError, OptionError, one_line

    try:
        return int(args.handler(args) or 0)
    except (NormstyleError, OSError, RuntimeError, MemoryError) as error:
        if os.environ.get("NORMSTYLE_DEBUG"):
            raise
        _close_progress_bars()
        print(f"{command}: error: {one_line(error)}", file=sys.stderr)
        return 2 if isinstance(error, OptionError) else 1
    except Exception as error:  # a bug: still one line, with the way to the traceback
        if os.environ.get("NORMSTYLE_DEBUG"):
            raise
        print(
            f"{command}: internal error: {type(error).__name__}: {one_line(error)}"
            " (NORMSTYLE_DEBUG=1 shows the traceback; please report it)",
            file=sys.stderr,
        )
        return 1


def _close_progress_bars() -> None:
    """End the line of any progress bar still open (an interrupted or failed run), so that the
    message after it stands on a line of its own and no redraw of the bar follows it."""
    std = sys.modules.get("tqdm.std")
    for bar in list(getattr(getattr(std, "tqdm", None), "_instances", ())):
        with contextlib.suppress(Exception):
            bar.close()


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated()


def _set_handler(signum: int, handler: Any) -> Any:
    """Install ``handler`` for ``signum`` (main thread only); returns the previous one."""
    if handler is None:  # nothing was installed (or the previous handler was not Python's)
        return None
    try:
        return signal.signal(signum, handler)
    except (ValueError, OSError, AttributeError):  # not the main thread, or no such signal
        return None
