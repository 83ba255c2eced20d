"""Folders of images: the files to use, and a loader that decodes and resizes them in a
background thread while the network works on the previous one."""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from normstyle.errors import InputError, NormstyleError, OptionError, one_line
from normstyle.io.decode import DEFAULT_MAX_PIXELS, READ_SUFFIXES, decoded
from normstyle.io.resize import fit
from normstyle.io.tensors import as_tensor


@dataclass(frozen=True)
class ImageFolder:
    """A folder of images as the folder tools (``normalize``, ``stats``) take it: the folder
    (searched recursively), the short side every image is resized to, and at most ``limit``
    files (sorted by path)."""

    path: str | os.PathLike[str]
    short_side: int = 256
    limit: int | None = None

    def files(self) -> list[Path]:
        """The image files, checked (:class:`InputError` if there are none)."""
        return image_files(self.path, self.limit)

    @property
    def name(self) -> str:
        """The folder's own name (what metadata records, not the whole path)."""
        return Path(self.path).name


def image_files(folder: str | os.PathLike[str], limit: int | None = None) -> list[Path]:
    """Image files under ``folder`` (recursively, sorted, by suffix), at most ``limit`` of them."""
    root = Path(folder)
    if not root.is_dir():
        raise InputError(f"{root}: not a folder of images")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in READ_SUFFIXES)
    if not files:
        raise InputError(f"{root}: no images found (looked for {', '.join(sorted(READ_SUFFIXES))})")
    if limit is not None:
        if limit <= 0:
            raise OptionError(f"limit must be positive, got {limit}")
        files = files[:limit]
    return files


# Every image of a folder is resized to one short side; VGG's five 2×2 poolings need 32 px.
MIN_SHORT_SIDE = 32


def check_short_side(size: int, max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
    """Raise :class:`OptionError` unless ``size`` is a usable short side for a VGG.

    A square image of that short side is the smallest any file can become; if that alone is
    over ``max_pixels`` no image of the folder could be used, so the option is refused up front.
    """
    if not isinstance(size, int) or size < MIN_SHORT_SIDE:
        raise OptionError(
            f"--short-side {size}: it must be at least {MIN_SHORT_SIDE} px"
            " (VGG's five 2×2 poolings)"
        )
    if size * size > max_pixels:
        raise OptionError(
            f"--short-side {size}: a {size}×{size} px image alone is more than the limit of"
            f" {max_pixels} pixels (memory and decoder limit); use a smaller --short-side"
        )


def folder_images(
    files: Sequence[Path],
    short_side: int,
    skipped: list[str] | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    prefetch: int = 4,
) -> Iterator[torch.Tensor]:
    """Yield each image as an RGB tensor (1, 3, H, W) in [0, 1], resized to ``short_side``.

    Decoding and resizing run in a background thread (Pillow releases the GIL), so they overlap
    with the network. The thread touches no torch op: a second OpenMP team beside the network's
    costs more than it saves (measured). Unreadable files, and images of more than
    ``max_pixels`` once resized, are skipped and named in ``skipped``; if no file at all can be
    used, :class:`InputError` says why. A ``short_side`` no image could have is refused here,
    before the first image is read.
    """
    check_short_side(short_side, max_pixels)
    return _stream(files, short_side, skipped, prefetch, max_pixels)


def _stream(
    files: Sequence[Path],
    short_side: int,
    skipped: list[str] | None,
    prefetch: int,
    max_pixels: int,
) -> Iterator[torch.Tensor]:
    done = object()
    buffer: queue.Queue[object] = queue.Queue(maxsize=prefetch)
    stop = threading.Event()

    def load() -> None:
        # Every outcome reaches the main thread: an image, a file to skip, or a failure. A
        # thread that died silently would leave the main thread waiting on the queue for ever.
        try:
            for path in files:
                if stop.is_set():
                    return
                try:
                    item: object = fit(decoded(path), short_side=short_side, max_pixels=max_pixels)
                except NormstyleError as error:  # unreadable, or too large once resized: skip
                    named = str(error).startswith(str(path))
                    item = error if named else InputError(f"{path}: {error}")
                except MemoryError:
                    item = InputError(f"{path}: not enough memory to decode it")
                except Exception as error:
                    item = _LoaderFailure(path, error)
                buffer.put(item)
                if isinstance(item, _LoaderFailure):
                    return
            buffer.put(done)
        except BaseException as error:
            buffer.put(_LoaderFailure(None, error))

    worker = threading.Thread(target=load, daemon=True)
    worker.start()
    reasons: list[str] = []
    count = 0
    try:
        while (item := buffer.get()) is not done:
            if isinstance(item, _LoaderFailure):
                raise item.as_error()
            if isinstance(item, NormstyleError):
                reasons.append(str(item))
                if skipped is not None:
                    skipped.append(str(item))
                continue
            assert isinstance(item, np.ndarray)
            count += 1
            yield as_tensor(item)
        if count == 0 and reasons:
            raise InputError(
                f"none of the {len(reasons)} image(s) could be used (the first: {reasons[0]})"
            )
    finally:
        stop.set()
        while worker.is_alive():  # unblock a worker waiting on a full queue
            try:
                buffer.get_nowait()
            except queue.Empty:
                worker.join(timeout=0.05)


class _LoaderFailure:
    """An unexpected error in the loader thread, carried to the main thread."""

    def __init__(self, path: Path | None, error: BaseException) -> None:
        self.path, self.error = path, error

    def as_error(self) -> InputError:
        where = f"{self.path}: " if self.path is not None else ""
        message = one_line(self.error)
        error = InputError(f"{where}loading failed ({type(self.error).__name__}: {message})")
        error.__cause__ = self.error
        return error
