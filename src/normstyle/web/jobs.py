"""The runs a web page asks for: admitted up to a bound, run one at a time on a worker thread
(the CPU is the scarce thing: two runs side by side would each take twice as long), watched
through a stream of events, cancelled at the next iteration, and forgotten when their page is
done with them (or after :data:`KEEP_SECONDS`).

Nothing here knows about HTTP; :mod:`normstyle.web.app` maps it to routes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from normstyle.errors import NormstyleError, one_line
from normstyle.io.save import image_png

logger = logging.getLogger("normstyle.web")

# A finished job's result is kept this long for its page to download it, then dropped.
KEEP_SECONDS = 30 * 60
# At most this many ended jobs are kept (the oldest dropped first), whatever their age.
KEEP_ENDED = 32
# The page is sent a new preview at most this often (a PNG encode costs a few ms at 512 px).
PREVIEW_SECONDS = 0.5


class Busy(Exception):
    """The queue is full: the page is told to try again."""


ENDED_STATES = ("done", "failed", "cancelled")  # a job in one of these never changes again


class Cancelled(Exception):
    """Raised inside a run (from its step callback) when its job is cancelled."""


@dataclass
class Job:
    """One stylisation asked for by a page: its inputs, its progress and its result."""

    # The work, given on_step and a check that raises Cancelled; None once it has ended, so
    # that the uploads it holds are dropped with it.
    run: Callable[..., Image.Image] | None
    settings: dict[str, Any]  # what the page asked for, stored in the PNG
    command: str  # the same as a normstyle command line
    preview: Callable[[Any], Image.Image] | None  # an in-run image (network space) as a picture
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
    forgotten: bool = False  # its page is done with it: dropped as soon as it ends
    changed: threading.Condition = field(default_factory=threading.Condition)
    version: int = 0  # bumped at every change, for the event stream

    @property
    def ended(self) -> bool:
        return self.state in ENDED_STATES

    def check(self) -> None:
        """Raise :class:`Cancelled` if the job was cancelled (called inside the run)."""
        if self.cancel.is_set():
            raise Cancelled()

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

    def versioned_snapshot(self) -> tuple[int, dict[str, Any]]:
        """The version and the snapshot that goes with it, read together (an update changes
        several fields, and a stream that read them one by one could see a run that is at once
        running and ended)."""
        with self.changed:
            return self.version, self.snapshot()

    def update(self, **changes: Any) -> None:
        with self.changed:
            for name, value in changes.items():
                setattr(self, name, value)
            self.version += 1
            self.changed.notify_all()


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
        with self._lock:
            return self._active()

    def _active(self) -> int:
        return sum(not job.ended for job in self.jobs.values())

    def find(self, job_id: str) -> Job | None:
        with self._lock:
            return self.jobs.get(job_id)

    def full(self) -> bool:
        """Whether a submission now would be refused (checked before reading an upload)."""
        with self._lock:
            self._forget_old()
            return self._active() >= self.capacity

    def submit(self, job: Job) -> Job:
        """Admit ``job`` or raise :class:`Busy`."""
        with self._lock:
            self._forget_old()
            if self._active() >= self.capacity:
                raise Busy(busy_message(self.capacity))
            self.jobs[job.id] = job
            self._waiting.put(job)
        return job

    def cancel(self, job_id: str) -> Job | None:
        with self._lock:
            job = self.jobs.get(job_id)
            if job is None:
                return None
            job.cancel.set()
            if job.state == "queued":
                self._end(job, state="cancelled", message="cancelled")
        return job

    def forget(self, job_id: str) -> None:
        """Drop a job and everything it holds (its page is done with it); a running one is
        cancelled and dropped as soon as it stops."""
        self.cancel(job_id)
        with self._lock:
            job = self.jobs.get(job_id)
            if job is not None:
                job.forgotten = True
                if job.ended:
                    self.jobs.pop(job_id, None)

    def cancel_all(self) -> None:
        """Cancel every job (the server is stopping); event streams then end."""
        for job_id in list(self.jobs):
            self.cancel(job_id)

    def close(self) -> None:
        """Cancel every job and stop the worker."""
        self.cancel_all()
        self._waiting.put(None)
        self._worker.join(timeout=30)

    def _end(self, job: Job, **changes: Any) -> None:
        """End ``job`` (lock held or not needed): its work and the uploads it holds go."""
        job.run = job.preview = None
        job.update(finished_at=time.monotonic(), **changes)
        if job.forgotten:
            self.jobs.pop(job.id, None)

    def _forget_old(self) -> None:
        """Drop ended jobs past :data:`KEEP_SECONDS`, and all but the newest :data:`KEEP_ENDED`."""
        now = time.monotonic()
        ended = sorted(
            (job for job in self.jobs.values() if job.ended and job.finished_at is not None),
            key=lambda job: job.finished_at or 0.0,
        )
        for number, job in enumerate(ended):
            if now - (job.finished_at or now) > KEEP_SECONDS or number < len(ended) - KEEP_ENDED:
                self.jobs.pop(job.id, None)

    def _work(self) -> None:
        while True:
            job = self._waiting.get()
            if job is None:
                return
            if job.cancel.is_set():
                continue
            self._run(job)
            with self._lock:
                self._forget_old()

    def _run(self, job: Job) -> None:
        with self._lock:
            if job.cancel.is_set():  # cancelled between the queue and here
                return
            job.update(state="running", message="starting")
        last_preview = [0.0]
        run: Callable[..., Image.Image] | None = job.run
        preview: Callable[[Any], Image.Image] | None = job.preview
        assert run is not None

        def on_step(iteration: int, x: Any, terms: Any) -> None:
            job.check()
            now = time.monotonic()
            changes: dict[str, Any] = {"iteration": job.iteration + 1, "message": "running"}
            with contextlib.suppress(TypeError, ValueError):
                changes["loss"] = float(terms.total)
            if preview is not None and now - last_preview[0] >= PREVIEW_SECONDS:
                last_preview[0] = now
                changes["preview_png"] = image_png(preview(x))
                changes["preview_version"] = job.preview_version + 1
            job.update(**changes)

        outcome: dict[str, Any]
        try:
            image = run(on_step, job.check)
            data = image_png(image, {"normstyle": json.dumps(job.settings), "command": job.command})
            outcome = {
                "state": "done",
                "result_png": data,
                "preview_png": image_png(image),
                "preview_version": job.preview_version + 1,
                "message": "done",
            }
        except Cancelled:
            outcome = {"state": "cancelled", "message": "cancelled"}
        except NormstyleError as error:
            outcome = {"state": "failed", "message": one_line(error)}
        except Exception as error:  # a bug: the page gets one line, the log the traceback
            logger.exception("run %s failed", job.id)
            message = f"internal error ({type(error).__name__}); the server keeps serving"
            outcome = {"state": "failed", "message": message}
        run = preview = None  # the uploads they hold go now
        with self._lock:
            self._end(job, **outcome)


def busy_message(capacity: int) -> str:
    """What a page is told when the queue is full."""
    return f"busy: {capacity} runs are already queued; try again in a minute"
