"""``normstyle serve``: a local web page to stylise pictures — drop two pictures, watch the image
form, download it. The page (``page.html``), its routes (``app``) and the queue of runs
(``jobs``); :func:`serve` starts it for notebooks and scripts, ``normstyle serve`` from a
terminal. An optional extra: ``pip install 'normstyle[web]'`` (FastAPI and uvicorn).

May import: ``normstyle.errors``, ``io``, ``style``, ``registry``.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

from normstyle.errors import OptionError

DEFAULT_PORT = 7860


def require_web() -> None:
    """Raise a one-line :class:`OptionError` saying how to install the web extra, if missing."""
    try:
        import fastapi  # noqa: F401
        import python_multipart  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise OptionError(
            "the web page needs the 'web' extra: pip install 'normstyle[web]'"
            " (FastAPI, uvicorn and python-multipart)"
        ) from None


@dataclass
class Server:
    """A server ready to run: uvicorn's, its listening socket, the queue of runs, the thread
    that loads the network in the background, and its URL."""

    uvicorn: Any
    socket: socket.socket
    jobs: Any
    warm_up: threading.Thread
    url: str

    def close(self) -> None:
        """Cancel the runs and wait for the worker and the warm-up to end (torch must not be
        inside a C++ call on another thread when the interpreter exits)."""
        self.jobs.close()
        self.warm_up.join(timeout=60)


@dataclass
class ServerHandle:
    """A running server: its ``url``; :meth:`stop` ends it (and every run it holds)."""

    url: str
    _server: Server
    _thread: threading.Thread

    def stop(self) -> None:
        """Stop serving, cancel the runs and wait for them (a few seconds at most)."""
        self._server.jobs.cancel_all()  # so that the pages' event streams end now
        self._server.uvicorn.should_exit = True
        self._thread.join(timeout=10)
        self._server.close()

    def __enter__(self) -> ServerHandle:
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()


def bound_socket(host: str, port: int) -> socket.socket:
    """A listening socket on ``host``:``port`` (0: any free port), or a one-line error."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise OptionError(f"cannot listen on '{host}': {error.strerror}") from None
    family, _, _, _, address = infos[0]
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(128)
    except OSError as error:
        sock.close()
        reason = "already in use" if error.errno in (98, 48) else (error.strerror or str(error))
        raise OptionError(f"cannot listen on {host}:{port}: {reason}") from None
    return sock


def build_server(
    host: str = "127.0.0.1", port: int = DEFAULT_PORT, max_size: int = 1024, queue: int = 8
) -> Server:
    """The server, bound to its port, loading the network in the background; not serving yet."""
    require_web()
    if not 32 <= max_size <= 8192:
        raise OptionError(f"--max-size must be from 32 to 8192 px, got {max_size}")
    if not 1 <= queue <= 1000:
        raise OptionError(f"--queue must be from 1 to 1000, got {queue}")
    if not 0 <= port <= 65535:
        raise OptionError(f"--port must be from 0 to 65535 (0: any free one), got {port}")
    import uvicorn

    from normstyle.web.app import create_app
    from normstyle.web.form import Settings
    from normstyle.web.jobs import JobQueue

    sock = bound_socket(host, port)
    jobs = JobQueue(queue)
    settings = Settings(max_size=max_size, queue=queue, loopback=is_loopback(host))
    app = create_app(settings, jobs)
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=3
    )

    class StoppingServer(uvicorn.Server):  # type: ignore[misc]
        """Ctrl-C or SIGTERM cancels the runs first, so that the pages' event streams end and
        the server can stop at once."""

        def handle_exit(self, sig: int, frame: Any) -> None:
            jobs.cancel_all()
            super().handle_exit(sig, frame)

    bound_port = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    warm_up = threading.Thread(target=_warm_up, args=(settings,), name="normstyle-warm-up")
    warm_up.start()
    url = f"http://{shown}:{bound_port}/"
    return Server(StoppingServer(config), sock, jobs, warm_up, url)


def _warm_up(settings: Any) -> None:
    """Build the network once, in the background, so that the first run does not wait for it."""
    with contextlib.suppress(Exception):
        from normstyle.registry import for_stylization
        from normstyle.runtime.convolutions import prepare_winograd
        from normstyle.runtime.precision import resolve_runtime
        from normstyle.style.options import StyleOptions

        options = StyleOptions()
        runtime = resolve_runtime(options.device, "fp32")
        key = (options.weights, options.normalize, options.pooling, str(runtime.device))
        if key not in settings.models:
            model = for_stylization(options.weights, options.normalize).build(
                pooling=options.pooling
            )
            model = model.to(runtime.device, memory_format=runtime.memory_format)
            prepare_winograd(model)
            settings.models.setdefault(key, model)


def serve(
    host: str = "127.0.0.1", port: int = DEFAULT_PORT, max_size: int = 1024, queue: int = 8
) -> ServerHandle:
    """Start the page in the background (for a notebook or a script) and return a handle with
    its ``url`` and ``stop()``. ``port=0`` picks a free port. Binds to loopback unless ``host``
    says otherwise."""
    server = build_server(host, port, max_size, queue)
    thread = threading.Thread(
        target=server.uvicorn.run,
        kwargs={"sockets": [server.socket]},
        name="normstyle-serve",
        daemon=True,
    )
    thread.start()
    deadline = time.monotonic() + 30
    while not server.uvicorn.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    if not server.uvicorn.started:
        server.close()
        raise OptionError(f"the server did not start on {server.url}")
    return ServerHandle(server.url, server, thread)


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine's loopback interface only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def warn_if_public(host: str) -> None:
    """One line on stderr when the page is reachable from other machines."""
    if not is_loopback(host):
        print(
            f"normstyle serve: warning: listening on {host}: anyone who can reach this machine"
            " can use the page and its CPU",
            file=sys.stderr,
        )
