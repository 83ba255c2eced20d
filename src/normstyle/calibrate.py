"""Calibration: stream a folder of images through a weight source's network and measure its
per-filter means (the input of :func:`normstyle.normalize.normalize`)."""

from __future__ import annotations

import datetime as dt
import os
import queue
import threading
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from normstyle import __version__
from normstyle.budget import BYTES_PER_TARGET_PIXEL, max_forward_pixels
from normstyle.errors import InputError, NormstyleError, OptionError
from normstyle.images import DEFAULT_MAX_PIXELS, READ_SUFFIXES, read_image, resize_short_side
from normstyle.models.vgg import Pooling
from normstyle.normalize import FilterMeans, activation_means
from normstyle.preprocessing import Preprocessing
from normstyle.weights import WeightSource


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
    """Raise :class:`OptionError` unless ``size`` is a usable short side for VGG.

    A square image of that short side is the smallest any file can become; if that alone is
    over ``max_pixels`` no image of the folder could be used, so the option is refused up front.
    """
    if not isinstance(size, int) or size < MIN_SHORT_SIDE:
        raise OptionError(
            f"--size {size}: the short side must be at least {MIN_SHORT_SIDE} px"
            " (VGG's five 2×2 poolings)"
        )
    if size * size > max_pixels:
        raise OptionError(
            f"--size {size}: a {size}×{size} px image alone is more than the limit of"
            f" {max_pixels} pixels (memory and decoder limit); use a smaller --size"
        )


def image_batches(
    files: Sequence[Path],
    prep: Preprocessing,
    size: int,
    skipped: list[str] | None = None,
    prefetch: int = 4,
    bytes_per_pixel: float = BYTES_PER_TARGET_PIXEL,
) -> Iterator[torch.Tensor]:
    """Yield each image as a (1, 3, H, W) network input, short side ``size``, channels-last.

    Decoding and resizing run in a background thread (Pillow releases the GIL), so they overlap
    with the network. The thread touches no torch op: a second OpenMP team beside the network's
    costs more than it saves (measured). Unreadable files, and images too large once resized
    for the memory available (``bytes_per_pixel`` of a forward pass), are skipped and named in
    ``skipped``; if no file at all can be used, :class:`InputError` says why. A ``size`` no image
    could have is refused here, before the first image is read.
    """
    memory_limit = max_forward_pixels(bytes_per_pixel)
    max_pixels = (
        DEFAULT_MAX_PIXELS if memory_limit is None else min(DEFAULT_MAX_PIXELS, memory_limit)
    )
    check_short_side(size, max_pixels)
    return _stream(files, prep, size, skipped, prefetch, max_pixels)


def _stream(
    files: Sequence[Path],
    prep: Preprocessing,
    size: int,
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
                    item: object = np.array(resize_short_side(read_image(path), size, max_pixels))
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
            rgb = torch.from_numpy(item).permute(2, 0, 1).unsqueeze(0).float().div_(255.0)
            count += 1
            yield prep.from_rgb(rgb).contiguous(memory_format=torch.channels_last)
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
        message = " ".join(str(self.error).split()) or type(self.error).__name__
        error = InputError(f"{where}loading failed ({type(self.error).__name__}: {message})")
        error.__cause__ = self.error
        return error


def _with_progress(
    batches: Iterable[torch.Tensor], total: int, show: bool, desc: str
) -> Iterator[torch.Tensor]:
    with tqdm(total=total, desc=desc, unit="img", disable=not show, dynamic_ncols=True) as bar:
        for batch in batches:
            yield batch
            bar.update(1)


def measure_means(
    model: torch.nn.Module,
    files: Sequence[Path],
    prep: Preprocessing,
    size: int = 256,
    progress: bool = True,
    desc: str = "calibrate",
    dtype: torch.dtype = torch.float32,
) -> tuple[FilterMeans, list[str]]:
    """Per-filter means of ``model`` on ``files`` (short side ``size``); also the skipped files.

    ``dtype=torch.float64`` runs the network itself in float64 (slower; for exactness checks).
    """
    model = model.to(dtype=dtype, memory_format=torch.channels_last)
    skipped: list[str] = []
    loaded = image_batches(files, prep, size, skipped)
    batches = _with_progress((x.to(dtype) for x in loaded), len(files), progress, desc)
    with torch.inference_mode():
        means = activation_means(model, batches)
    return means, skipped


def calibrate(
    source: WeightSource,
    folder: str | os.PathLike[str],
    size: int = 256,
    limit: int | None = None,
    pooling: Pooling = "max",
    progress: bool = True,
) -> tuple[FilterMeans, list[str]]:
    """Measure ``source``'s per-filter means on the images in ``folder``.

    Pooling defaults to max: the network as it was trained (Gatys et al. normalise the trained
    network and only then swap in average pooling for synthesis).
    """
    check_short_side(size)
    files = image_files(folder, limit)
    model = source.build(pooling=pooling)
    means, skipped = measure_means(model, files, source.preprocessing, size, progress)
    means.meta = {
        "weights": {"id": source.id, "sha256": source.sha256, "arch": source.arch},
        "preprocessing": source.preprocessing.name,
        "pooling": pooling,
        "image_size": {"short_side": size},
        "calibration_set": {
            "folder": Path(folder).name,
            "files": len(files),
            "skipped": len(skipped),
        },
        "created": dt.date.today().isoformat(),
        "normstyle": __version__,
    }
    return means, skipped
