"""A local web page to stylise pictures: upload a photo and a painting, watch the image form,
download it. Needs the 'web' extra (pip install 'normstyle[web]')."""

from __future__ import annotations

import argparse
import sys

from normstyle.cli.common import positive_int, say

NAME = "serve"
HELP = "a local web page: drop two pictures, watch the image form, download it"


def add_options(parser: argparse.ArgumentParser) -> None:
    """The options of ``serve``."""
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on [127.0.0.1: this machine only; anything else is public]",
    )
    parser.add_argument("--port", type=_port, default=7860, help="port (0: any free one) [7860]")
    parser.add_argument(
        "--max-size", type=positive_int, default=1024, help="largest output long side, px [1024]"
    )
    parser.add_argument(
        "--queue",
        type=positive_int,
        default=8,
        help="runs admitted at once, running and waiting; more are told to try again [8]",
    )


def _port(text: str) -> int:
    """argparse type: a TCP port, 0 to 65535."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got '{text}'") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is from 0 to 65535, got {value}")
    return value


def handle(args: argparse.Namespace) -> int:
    """Run the server until Ctrl-C or SIGTERM."""
    from normstyle.web import build_server, warn_if_public

    server = build_server(args.host, args.port, args.max_size, args.queue)
    warn_if_public(args.host)
    say(f"normstyle serve: {server.url} (Ctrl-C stops)")
    try:
        server.uvicorn.run(sockets=[server.socket])
    except KeyboardInterrupt:
        pass
    finally:
        server.close()
    print("normstyle serve: stopped", file=sys.stderr)
    return 0
