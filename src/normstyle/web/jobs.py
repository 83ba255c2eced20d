"""The runs a web page asks for: admitted up to a bound, run one at a time on a worker thread
(the CPU is the scarce thing: two runs side by side would each take twice as long), watched
through a stream of events, cancelled at the next iteration, and forgotten when their page is
done with them (or after :data:`KEEP_SECONDS`).

Nothing here knows about HTTP; :mod:`normstyle.web.app` maps it to routes.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from PIL import Image
from PIL.PngImagePlugin import PngInfo

from normstyle.errors import NormstyleError

logger = logging.getLogger("normstyle.web")

# A finished job's result is kept this long for its page to download it, then dropped.
KEEP_SECONDS = 30 * 60
# The page is sent a new preview at most this often (a PNG encode costs a few ms at 512 px).
PREVIEW_SECONDS = 0.5


class Busy(Exception):
    """The queue is full: the page is told to try again."""


class Cancelled(Exception):
    """Raised inside a run (from its step callback) when its job is cancelled."""


@dataclass
class Job:
    """One stylisation asked for by a page: its inputs, its progress and its result."""

    run: Callable[[Callable[[int, Any, Any], None]], Image.Image]  # the work, given on_step
    settings: dict[str, Any]  # what the page asked for, stored in the PNG
    command: str  # the same as a normstyle command line
    preview: Callable[[Any], Image.Image]  # an in-run image (network space) as a picture
    id: str = field(default_factory=lambda: uuid.uuid4().hex)
    state: str = "queued"  # queued, running, done, failed, cancelled
    iteration: int = 0
    loss: float | None = None
    message: str = ""
    preview_png: bytes | None = None
    preview_version: int = 0
    result_png: bytes | None = None
    finished_at: float | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    changed: threading.Condition = field(default_factory=threading.Condition)
    version: int = 0  # bumped at every change, for the event stream

    def snapshot(self) -> dict[str, Any]:
        """What the page is told: state, progress, the preview's version, the message."""
        return {
            "id": self.id,
            "state": self.state,
            "iteration": self.iteration,
            "loss": self.loss,
            "preview": self.preview_version,
            "message": self.message,
            "command": self.command,
        }

    def update(self, **changes: Any) -> None:
        with self.changed:
            for name, value in changes.items():
                setattr(self, name, value)
            self.version += 1
            self.changed.notify_all()

    def events(self, timeout: float = 15.0) -> Iterator[dict[str, Any] | None]:
        """The job's snapshots as it changes, until it ends; None after ``timeout`` seconds
        without a change (a keep-alive for the stream)."""
        seen = -1
        while True:
            with self.changed:
                if self.version == seen:
                    self.changed.wait(timeout)
                if self.version == seen:
                    snapshot = None
                else:
                    seen = self.version
                    snapshot = self.snapshot()
            yield snapshot
            if snapshot is not None and snapshot["state"] in ("done", "failed", "cancelled"):
                return


class JobQueue:
    """Admits at most ``capacity`` jobs at once (running and waiting) and runs them one after
    the other on its own worker thread."""

    def __init__(self, capacity: int = 8) -> None:
        if capacity < 1:
            raise ValueError("the queue must admit at least one job")
        self.capacity = capacity
        self.jobs: dict[str, Job] = {}
        self._waiting: queue.Queue[Job | None] = queue.Queue()
        self._lock = threading.Lock()
        self._worker = threading.Thread(target=self._work, name="normstyle-runs", daemon=True)
        self._worker.start()

    def active(self) -> int:
        """Jobs admitted and not ended."""
        return sum(job.state in ("queued", "running") for job in self.jobs.values())

    def submit(self, job: Job) -> Job:
        """Admit ``job`` or raise :class:`Busy`."""
        with self._lock:
            self._forget_old()
            if self.active() >= self.capacity:
                raise Busy(f"busy: {self.capacity} runs are already queued; try again in a minute")
            self.jobs[job.id] = job
            self._waiting.put(job)
        return job

    def cancel(self, job_id: str) -> Job | None:
        job = self.jobs.get(job_id)
        if job is not None:
            job.cancel.set()
            if job.state == "queued":
                job.update(state="cancelled", message="cancelled", finished_at=time.monotonic())
        return job

    def forget(self, job_id: str) -> None:
        """Drop a job and everything it holds (its page is done with it); a running one is
        cancelled first."""
        job = self.cancel(job_id)
        if job is not None and job.state not in ("queued", "running"):
            self.jobs.pop(job_id, None)

    def close(self) -> None:
        """Cancel every job and stop the worker."""
        for job_id in list(self.jobs):
            self.cancel(job_id)
        self._waiting.put(None)
        self._worker.join(timeout=30)

    def _forget_old(self) -> None:
        now = time.monotonic()
        for job_id, job in list(self.jobs.items()):
            if job.finished_at is not None and now - job.finished_at > KEEP_SECONDS:
                self.jobs.pop(job_id, None)

    def _work(self) -> None:
        while True:
            job = self._waiting.get()
            if job is None:
                return
            if job.cancel.is_set():
                continue
            self._run(job)

    def _run(self, job: Job) -> None:
        job.update(state="running", message="starting")
        last_preview = [0.0]

        def on_step(iteration: int, x: Any, terms: Any) -> None:
            if job.cancel.is_set():
                raise Cancelled()
            now = time.monotonic()
            changes: dict[str, Any] = {"iteration": job.iteration + 1, "message": "running"}
            with contextlib.suppress(TypeError, ValueError):
                changes["loss"] = float(terms.total)
            if now - last_preview[0] >= PREVIEW_SECONDS:
                last_preview[0] = now
                changes["preview_png"] = png_bytes(job.preview(x))
                changes["preview_version"] = job.preview_version + 1
            job.update(**changes)

        try:
            image = job.run(on_step)
            data = png_bytes(image, {"normstyle": json.dumps(job.settings), "command": job.command})
            job.update(
                state="done",
                result_png=data,
                preview_png=png_bytes(image),
                preview_version=job.preview_version + 1,
                message="done",
                finished_at=time.monotonic(),
            )
        except Cancelled:
            job.update(state="cancelled", message="cancelled", finished_at=time.monotonic())
        except NormstyleError as error:
            job.update(state="failed", message=_one_line(error), finished_at=time.monotonic())
        except Exception as error:  # a bug: the page gets one line, the log the traceback
            logger.exception("run %s failed", job.id)
            job.update(
                state="failed",
                message=f"internal error ({type(error).__name__}); the server keeps serving",
                finished_at=time.monotonic(),
            )


def png_bytes(image: Image.Image, text: dict[str, str] | None = None) -> bytes:
    """``image`` as PNG bytes, with ``text`` in its tEXt chunks."""
    info = PngInfo()
    for key, value in (text or {}).items():
        info.add_text(key, value)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__
