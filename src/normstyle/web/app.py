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
import random
import re
import shlex
import threading
from dataclasses import dataclass, field
from importlib import resources
from typing import Any
from urllib.parse import quote

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from PIL import Image

from normstyle.errors import NormstyleError, OptionError
from normstyle.io.builtin import BUILTIN_IMAGES, builtin_image
from normstyle.io.decode import WHITE, image_to_array, read_image_bytes
from normstyle.web.jobs import Busy, Job, JobQueue, busy_message, png_bytes

# Each uploaded file may be at most this large, and a whole form this many times as large.
MAX_FILE_BYTES = 20 << 20
MAX_FILES = 9  # content, up to four styles and their masks
MAX_FIELD_BYTES = 64 << 10  # a text field
# The header a request that changes something must carry (the page's fetch sends it).
REQUEST_HEADER = "x-normstyle"
LOOPBACK_NAMES = {"127.0.0.1", "localhost", "::1", "[::1]"}
MAX_STYLES = 4
PRESERVE = ("none", "luminance", "histogram", "luminance-swap")
POLL_SECONDS = 0.2  # how often an event stream looks at its job


@dataclass
class Settings:
    """What a server allows and holds: the largest output, the queue, the networks it built,
    and whether it listens on loopback only (then only loopback host names are answered)."""

    max_size: int = 1024
    queue: int = 8
    models: dict[tuple, Any] = field(default_factory=dict)
    loopback: bool = True
    # One upload decoded at a time: a small file may hold a large picture.
    decoding: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(1))


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


class FormError(Exception):
    """A bad form: the page shows the message (HTTP ``status``)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


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
            thumbnails[name] = png_bytes(image)
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
            fields = await _read_form(form)
            job = await asyncio.to_thread(_job, fields, settings)
            jobs.submit(job)
        except BodyTooLarge:
            return _error(too_large, 413)
        except FormError as error:
            return _error(str(error), error.status)
        except (NormstyleError, ValueError) as error:
            return _error(_one_line(error), 400)
        except Busy as error:
            return _error(str(error), 503)
        except Exception as error:  # a malformed multipart body and the like
            return _error(f"the form could not be read ({_one_line(error)})", 400)
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
                    seen, quiet = job.version, 0.0
                    yield f"data: {json.dumps(job.snapshot())}\n\n"
                    if job.ended:
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


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


async def _read_form(form: Any) -> dict[str, Any]:
    """The form's fields: uploads as (file name, bytes), the rest as strings."""
    fields: dict[str, Any] = {}
    for key, value in form.multi_items():
        if hasattr(value, "read"):
            data = await value.read()
            if len(data) > MAX_FILE_BYTES:
                raise FormError(f"{value.filename}: larger than {MAX_FILE_BYTES >> 20} MB", 413)
            if data:
                fields.setdefault(key, []).append((value.filename or key, data))
        else:
            fields.setdefault(key, []).append(str(value))
    return fields


def _one(fields: dict[str, Any], name: str, default: str = "") -> str:
    values = [v for v in fields.get(name, []) if isinstance(v, str)]
    return values[0].strip() if values else default


def _picture(
    upload: tuple[str, bytes],
    settings: Settings,
    background: tuple[int, int, int] = WHITE,
) -> Any:
    """An upload decoded (one at a time) and shrunk at once to twice the largest output the
    server allows: a 236 KB file may hold 9000×9000 pixels, a gigabyte as float."""
    name, data = upload
    with settings.decoding:
        image = read_image_bytes(data, _safe(name), background=background)
        limit = 2 * settings.max_size
        if max(image.size) > limit:
            image.thumbnail((limit, limit), Image.Resampling.LANCZOS)
        return image_to_array(image)


def _safe(name: str) -> str:
    """A file name as messages and command lines show it: its last part, harmless characters,
    never an option (a name starting with "-" becomes "./-…")."""
    base = re.split(r"[\\/]", name)[-1] or "upload"
    safe = re.sub(r"[^\w.-]", "_", base)[:80]
    return f"./{safe}" if safe.startswith("-") else safe


def _job(fields: dict[str, Any], settings: Settings) -> Job:
    """Check the form and turn it into a job (decoding every image: a bad file fails here, in
    one line, before it is queued)."""
    from normstyle.style.guidance import decoded_mask
    from normstyle.style.options import StyleOptions
    from normstyle.style.transfer import run

    uploads = [v for v in fields.get("content", []) if isinstance(v, tuple)]
    builtin = _one(fields, "content_builtin")
    if uploads:
        content, content_name = _picture(uploads[0], settings), _safe(uploads[0][0])
    elif builtin in BUILTIN_IMAGES:
        content, content_name = f"builtin:{builtin}", f"builtin:{builtin}"
    else:
        raise FormError("choose a content image (upload one, or pick a built-in one)")
    styles, style_names = [], []
    for upload in [v for v in fields.get("styles", []) if isinstance(v, tuple)]:
        styles.append(_picture(upload, settings))
        style_names.append(_safe(upload[0]))
    for name in [v for v in fields.get("style_builtins", []) if isinstance(v, str) and v]:
        if name not in BUILTIN_IMAGES:
            raise FormError(f"no built-in image '{name}'")
        styles.append(f"builtin:{name}")
        style_names.append(f"builtin:{name}")
    if not styles:
        raise FormError("choose at least one style image")
    if len(styles) > MAX_STYLES:
        raise FormError(f"at most {MAX_STYLES} style images")
    masks = [v for v in fields.get("masks", []) if isinstance(v, tuple)]
    if masks and len(masks) != len(styles):
        raise FormError(f"{len(masks)} masks for {len(styles)} style images: one per style image")
    mask_arrays = [
        decoded_mask(
            _picture(upload, settings, background=(0, 0, 0)), f"mask {number} ({_safe(upload[0])})"
        )
        for number, upload in enumerate(masks, start=1)
    ]

    size_text = _one(fields, "size", "512")
    if not size_text.isdigit() or not 32 <= int(size_text) <= settings.max_size:
        raise FormError(f"the size must be a whole number of pixels from 32 to {settings.max_size}")
    size = int(size_text)
    iterations_text = _one(fields, "iterations", "auto").lower()
    if iterations_text != "auto" and (
        not iterations_text.isdigit() or not 1 <= int(iterations_text) <= 2000
    ):
        raise FormError("iterations must be 'auto' or a whole number from 1 to 2000")
    iterations: int | str = "auto" if iterations_text == "auto" else int(iterations_text)
    preserve = _one(fields, "preserve_colors", "none")
    if preserve not in PRESERVE:
        raise FormError(f"colour control must be one of {', '.join(PRESERVE)}")
    blend_text = _one(fields, "blend")
    blend = None
    if blend_text:
        try:
            blend = tuple(float(part) for part in blend_text.split(","))
        except ValueError:
            raise FormError("blend weights must be numbers separated by commas") from None
        if len(blend) != len(styles):
            raise FormError(f"{len(blend)} blend weights for {len(styles)} style images")
        from normstyle.style.targets import blend_weights

        blend_weights(blend, len(styles))  # all zero, negative …: refused now, not mid-run
    seed = random.randrange(2**31)
    options = StyleOptions(
        long_side=size,
        iterations=iterations,
        preserve_colors=preserve,  # type: ignore[arg-type]
        style_blend=blend,
        masks=tuple(mask_arrays) if mask_arrays else None,
        seed=seed,
        progress=False,
    )
    stem = content_name.removeprefix("builtin:").removeprefix("./").rsplit(".", 1)[0] or "image"
    output = f"{stem}-stylised.png"
    command = ["normstyle", "stylize", content_name, *style_names, "-o", output]
    command += ["--size", str(size), "--seed", str(seed)]
    if iterations != "auto":
        command += ["--iterations", str(iterations)]
    if preserve != "none":
        command += ["--preserve-colors", preserve]
    if blend is not None:
        command += ["--style-blend", ",".join(f"{w:g}" for w in blend)]
    if masks:
        command += ["--masks", *(_safe(name) for name, _ in masks)]
    settings_record = {
        "content": content_name,
        "styles": style_names,
        "size": size,
        "iterations": iterations,
        "preserve_colors": preserve,
        "style_blend": blend,
        "masks": [_safe(name) for name, _ in masks],
        "seed": seed,
        "output": output,
    }
    from normstyle.registry import for_stylization

    preprocessing = for_stylization(options.weights, options.normalize).preprocessing

    def work(on_step: Any, check: Any) -> Any:
        return run(
            content, styles, options, on_step=on_step, models=settings.models, interrupt=check
        ).image

    def preview(x: Any) -> Any:
        return preprocessing.tensor_to_image(x.detach().float().cpu())

    if isinstance(content, np.ndarray) and max(content.shape[:2]) < 16:
        raise OptionError("the content image is too small")
    return Job(
        run=work,
        settings=settings_record,
        command=" ".join(shlex.quote(part) for part in command),
        preview=preview,
    )
