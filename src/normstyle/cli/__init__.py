"""The ``normstyle`` command: ``main(argv)`` runs in-process, so tests call it directly.

Library errors become one line on stderr: option errors exit 2 (like usage errors), input and
runtime errors exit 1, Ctrl-C exits 130. Set NORMSTYLE_DEBUG=1 for tracebacks.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from normstyle import __version__
from normstyle.cli import (
    lab_command,
    normalize_command,
    stats_command,
    stylize_command,
    weights_command,
)
from normstyle.cli.common import OneLineParser
from normstyle.errors import NormstyleError, OptionError

COMMANDS = (stylize_command, normalize_command, stats_command, lab_command, weights_command)


def make_parser() -> argparse.ArgumentParser:
    """The argument parser of ``normstyle`` and its sub-commands."""
    parser = OneLineParser(
        prog="normstyle",
        description="Gatys et al. style transfer on a properly normalised VGG-19.",
    )
    parser.add_argument("--version", action="version", version=f"normstyle {__version__}")
    subparsers = parser.add_subparsers(
        dest="command", metavar="COMMAND", required=True, parser_class=OneLineParser
    )
    for command in COMMANDS:
        command.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``normstyle`` with ``argv`` (default: ``sys.argv[1:]``); returns the exit code."""
    parser = make_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, --version, usage errors
        return int(exit_.code or 0)
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        print("normstyle: interrupted; nothing written", file=sys.stderr)
        return 130
    except (NormstyleError, OSError, RuntimeError, MemoryError) as error:
        if os.environ.get("NORMSTYLE_DEBUG"):
            raise
        message = " ".join(str(error).split()) or type(error).__name__
        print(f"normstyle {args.command}: error: {message}", file=sys.stderr)
        return 2 if isinstance(error, OptionError) else 1
