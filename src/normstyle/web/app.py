"""The HTTP side of ``normstyle serve``: a FastAPI app with one page and a small JSON API.

- ``GET /``: the page (HTML, CSS and JavaScript in one file, nothing from any other host).
- ``GET /builtin/NAME.png``: a built-in image the page offers.
- ``POST /jobs``: a multipart form (content, styles, masks, options) → ``{"id": …}`` (202), or
  ``{"error": …}`` with 400 (a bad file or option), 413 (too large) or 503 (busy).
- ``GET /jobs/ID/events``: server-sent events, one JSON snapshot per change of the job.
- ``GET /jobs/ID/preview.png``, ``GET /jobs/ID/result.png`` (a download, with the settings in
  its PNG text chunks), ``POST /jobs/ID/cancel``, ``DELETE /jobs/ID``.

Uploads stay in memory, shrunk at once to twice the largest output, and are dropped with their
job; the decoder's checks (and its bomb guard) apply to every file; a body larger than the limit
is cut off as it streams in; a run's error is a one-line message, never a traceback. Requests
that change something (POST, DELETE) must carry the ``X-Normstyle`` header that the page sends,
which a page from another site cannot send without asking first (CORS), and on loopback only
loopback host names are answered (no DNS rebinding).
"""

from __future__ import annotations

import asyncio
import json
import re
from importlib import resources
from typing import Any
from urllib.parse import quote

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse

from normstyle.errors import NormstyleError, one_line
from normstyle.io.builtin import BUILTIN_IMAGES, builtin_image
from normstyle.io.save import image_png
from normstyle.web.form import (
    MAX_FIELD_BYTES,
    MAX_FILE_BYTES,
    MAX_FILES,
    FormError,
    Settings,
    job_from_form,
    read_form,
)
from normstyle.web.jobs import ENDED_STATES, Busy, Job, JobQueue, busy_message

# The header a request that changes something must carry (the page's fetch sends it).
REQUEST_HEADER = "x-normstyle"
LOOPBACK_NAMES = {"127.0.0.1", "localhost", "::1", "[::1]"}
POLL_SECONDS = 0.2  # how often an event stream looks at its job


class BodyTooLarge(Exception):
    """The request's body passed the limit while it streamed in."""


class LimitBody:
    """ASGI middleware: a request body (chunked or not) larger than ``limit`` bytes is cut off
    as it arrives — the route that reads it gets :class:`BodyTooLarge`."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        seen = 0

        async def limited() -> Any:
            nonlocal seen
            message = await receive()
            if message.get("type") == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise BodyTooLarge()
            return message

        await self.app(scope, limited, send)


def create_app(settings: Settings, jobs: JobQueue) -> FastAPI:
    """The app for ``settings``, running its stylisations on ``jobs``."""
    app = FastAPI(title="normstyle", docs_url=None, redoc_url=None, openapi_url=None)
    app.add_middleware(LimitBody, limit=MAX_FILES * MAX_FILE_BYTES)

    @app.middleware("http")
    async def guard(request: Request, call_next: Any) -> Response:
        host = (request.headers.get("host") or "").rsplit(":", 1)[0].strip("[]")
        if settings.loopback and host not in {name.strip("[]") for name in LOOPBACK_NAMES}:
            return _error("this server answers on this machine's loopback names only", 421)
        if request.method in ("POST", "DELETE") and not request.headers.get(REQUEST_HEADER):
            return _error("requests that change something must come from the page", 403)
        return await call_next(request)

    page = resources.files("normstyle.web").joinpath("page.html").read_text(encoding="utf-8")
    config = json.dumps({"maxSize": settings.max_size, "builtins": sorted(BUILTIN_IMAGES)})
    page = page.replace("/*CONFIG*/{}", config)
    thumbnails: dict[str, bytes] = {}

    @app.get("/", response_class=HTMLResponse)
    def index() -> HTMLResponse:
        return HTMLResponse(page, headers={"Cache-Control": "no-store"})

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"ok": True, "active": jobs.active(), "capacity": jobs.capacity}

    @app.get("/builtin/{name}.png")
    def builtin(name: str) -> Response:
        if name not in BUILTIN_IMAGES:
            return JSONResponse({"error": f"no built-in image '{name}'"}, status_code=404)
        if name not in thumbnails:
            image = builtin_image(f"builtin:{name}")
            image.thumbnail((256, 256))
            thumbnails[name] = image_png(image)
        return Response(thumbnails[name], media_type="image/png")

    @app.post("/jobs")
    async def submit(request: Request) -> JSONResponse:
        try:
            length = int(request.headers.get("content-length") or 0)
        except ValueError:
            length = 0
        too_large = f"the upload is larger than {MAX_FILES * MAX_FILE_BYTES >> 20} MB"
        if length > MAX_FILES * MAX_FILE_BYTES:
            return _error(too_large, 413)
        if jobs.full():  # before reading (and decoding) anything
            return _error(busy_message(jobs.capacity), 503)
        try:
            form = await request.form(
                max_files=MAX_FILES, max_fields=32, max_part_size=MAX_FIELD_BYTES
            )
            fields = await read_form(form)
            job = await asyncio.to_thread(job_from_form, fields, settings)
            jobs.submit(job)
        except BodyTooLarge:
            return _error(too_large, 413)
        except FormError as error:
            return _error(str(error), error.status)
        except (NormstyleError, ValueError) as error:
            return _error(one_line(error), 400)
        except Busy as error:
            return _error(str(error), 503)
        except Exception as error:  # a malformed multipart body and the like
            return _error(f"the form could not be read ({one_line(error)})", 400)
        return JSONResponse({"id": job.id}, status_code=202)

    def _found(job_id: str) -> Job | None:
        return jobs.find(job_id)

    @app.get("/jobs/{job_id}/events")
    async def events(job_id: str) -> Response:
        job = _found(job_id)
        if job is None:
            return _error("no such run (it may have been cleared)", 404)

        async def stream() -> Any:
            # Polled, not waited for on a thread: an open stream costs no thread (a page that
            # watches a queued run for minutes must not starve the server's small pool).
            seen, quiet = -1, 0.0
            while True:
                if job.version != seen:
                    # The stream ends on the state it sent, not on the job's state a moment
                    # later: a run that ended between the two would leave the page's last
                    # word "running" (seen in a test: a cancelled run that never said so).
                    seen, snapshot = job.versioned_snapshot()
                    quiet = 0.0
                    yield f"data: {json.dumps(snapshot)}\n\n"
                    if snapshot["state"] in ENDED_STATES:
                        return
                elif quiet >= 15.0:
                    quiet = 0.0
                    yield ": keep-alive\n\n"
                await asyncio.sleep(POLL_SECONDS)
                quiet += POLL_SECONDS

        headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
        return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)

    @app.get("/jobs/{job_id}/preview.png")
    def preview(job_id: str) -> Response:
        job = _found(job_id)
        if job is None or job.preview_png is None:
            return _error("no preview yet", 404)
        return Response(
            job.preview_png, media_type="image/png", headers={"Cache-Control": "no-store"}
        )

    @app.get("/jobs/{job_id}/result.png")
    def result(job_id: str) -> Response:
        job = _found(job_id)
        if job is None or job.result_png is None:
            return _error("no result (yet)", 404)
        wanted = job.settings.get("output", "normstyle.png")
        name = re.sub(r"[^A-Za-z0-9_.-]", "_", wanted)
        disposition = f"attachment; filename=\"{name}\"; filename*=UTF-8''{quote(wanted)}"
        return Response(
            job.result_png, media_type="image/png", headers={"Content-Disposition": disposition}
        )

    @app.post("/jobs/{job_id}/cancel")
    def cancel(job_id: str) -> JSONResponse:
        job = jobs.cancel(job_id)
        if job is None:
            return _error("no such run", 404)
        return JSONResponse(job.snapshot())

    @app.delete("/jobs/{job_id}")
    def forget(job_id: str) -> JSONResponse:
        jobs.forget(job_id)
        return JSONResponse({"ok": True})

    return app


def _error(message: str, status: int) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)
