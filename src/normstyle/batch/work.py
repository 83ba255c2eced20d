"""What a batch worker does with one job, wherever it runs (a local process, a Ray task): decode
the input files it is handed (as bytes, so a worker needs no shared file system), stylise, and
hand back the PNG (with the job's settings hash in it) and a record — or the one-line reason it
failed. A worker builds the network once and keeps it for every job it is given."""

from __future__ import annotations

import os
import socket
import time
from typing import Any

# The networks this worker process has built, by what they are (see style/transfer.py).
_MODELS: dict[tuple, Any] = {}

HASH_KEY = "normstyle-settings-hash"  # the PNG text chunk that says which settings made it


def payload(job: Any) -> dict[str, Any]:
    """What a worker needs for ``job`` (a :class:`~normstyle.batch.manifest.BatchJob`): its
    name, options, settings hash and the bytes of its input files (None for one that cannot be
    read: the job then fails with the reason)."""
    files = {}
    for path in job.files():
        try:
            with open(path, "rb") as handle:
                files[path] = handle.read()
        except OSError as error:
            files[path] = f"{path}: {error.strerror or error}"
    return {
        "name": job.name,
        "content": job.content,
        "styles": job.styles,
        "masks": job.masks,
        "options": job.options,
        "hash": job.settings_hash(),
        "files": files,
    }


def execute(work: dict[str, Any], threads: int | None = None) -> dict[str, Any]:
    """Run one job; never raises for the job's own problems (an unreadable image, an option
    that cannot work): they become ``status: failed`` with a one-line ``error``."""
    import torch

    from normstyle.errors import NormstyleError, one_line
    from normstyle.io.save import image_png

    if threads:
        torch.set_num_threads(threads)
    started = time.perf_counter()
    record: dict[str, Any] = {
        "name": work["name"],
        "settings_hash": work["hash"],
        "worker": f"{socket.gethostname()}:{os.getpid()}",
    }
    attempt = _ray_attempt(work.get("run"))
    if attempt is not None:
        record["attempt"] = attempt
    try:
        images = {
            path: _image(path, data, mask=path in work["masks"])
            for path, data in work["files"].items()
        }
        result = _stylise(work, images)
        record.update(
            status="done",
            seconds=round(time.perf_counter() - started, 3),
            loss=result.final["total"],
            iterations=len(result.losses),
            seed=result.seed,
        )
        text = {HASH_KEY: work["hash"], "normstyle": _settings(work)}
        return {"record": record, "png": image_png(result.image, text)}
    except (NormstyleError, OSError, RuntimeError, MemoryError) as error:
        record.update(status="failed", error=one_line(error))
    except Exception as error:  # a bug: one line, the job fails alone
        record.update(
            status="failed", error=f"internal error: {type(error).__name__}: {one_line(error)}"
        )
    record["seconds"] = round(time.perf_counter() - started, 3)
    return {"record": record, "png": None}


def _ray_attempt(run: str | None) -> int | None:
    """Under Ray, which attempt at this task this is (1, or more after a worker died): Ray
    retries a task under the same task id, so each attempt counts itself in a file named by it
    in Ray's temporary folder, under the batch's ``run`` id (task ids repeat from one cluster to
    the next, the temporary folder stays). Per machine: a retry on another node counts from 1
    there."""
    import sys
    from pathlib import Path

    if "ray" not in sys.modules:
        return None
    try:
        context = sys.modules["ray"].get_runtime_context()
        task = context.get_task_id()
        folder = Path(context.get_temp_dir()) / "normstyle-attempts"
    except Exception:
        return None
    if not task or not run:
        return None
    folder = folder / run
    folder.mkdir(parents=True, exist_ok=True)
    marker = folder / task
    try:
        count = int(marker.read_text()) + 1
    except (OSError, ValueError):
        count = 1
    marker.write_text(str(count))
    return count


def _image(path: str, data: bytes | str, mask: bool) -> Any:
    from normstyle.errors import InputError
    from normstyle.io.decode import image_to_array, read_image_bytes

    if isinstance(data, str):  # the driver could not read it
        raise InputError(data)
    background = (0, 0, 0) if mask else (255, 255, 255)
    return image_to_array(read_image_bytes(data, path, background=background))


def _stylise(work: dict[str, Any], images: dict[str, Any]) -> Any:
    from normstyle.style.options import StyleOptions
    from normstyle.style.transfer import run

    masks = tuple(images[path] for path in work["masks"]) or None
    options = StyleOptions(**{**work["options"], "masks": masks, "progress": False})
    styles = [images[path] for path in work["styles"]]
    return run(images[work["content"]], styles, options, models=_MODELS)


def _settings(work: dict[str, Any]) -> str:
    import json

    shown = {
        "content": os.path.basename(work["content"]),
        "styles": [os.path.basename(p) for p in work["styles"]],
        "masks": [os.path.basename(p) for p in work["masks"]],
        **work["options"],
    }
    return json.dumps(shown, default=str, sort_keys=True)
