"""Calibration and the folder workflows of ``normstyle normalize``: measure a weight source's
per-filter means on a folder of images, normalise it and check the result on the same images,
verify a saved normalised network on other images, and compare the two methods."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from normstyle import __version__
from normstyle.errors import InputError, OptionError
from normstyle.io.folders import ImageFolder, check_short_side
from normstyle.nets.inputs import network_inputs
from normstyle.nets.preprocessing import Preprocessing
from normstyle.nets.source import WeightSource
from normstyle.nets.vgg import Pooling
from normstyle.normalization.cascade import Method, normalize
from normstyle.normalization.checks import (
    LayerCheck,
    MethodDrift,
    check_means,
    compare_methods,
    verify,
)
from normstyle.normalization.means import FilterMeans, activation_means

# Three networks side by side in compare_methods, every conv and ReLU output of each kept.
COMPARE_BYTES_PER_PIXEL = 9000


def _with_progress(
    batches: Iterable[torch.Tensor], total: int, show: bool, desc: str
) -> Iterator[torch.Tensor]:
    # disable=None: shown only where stderr is a terminal (a log file gets no bar lines).
    disable = None if show else True
    with tqdm(total=total, desc=desc, unit="img", disable=disable, dynamic_ncols=True) as bar:
        for batch in batches:
            yield batch
            bar.update(1)


def measure_means(
    model: nn.Module,
    files: Sequence[Path],
    prep: Preprocessing,
    short_side: int = 256,
    progress: bool = True,
    desc: str = "calibrate",
    dtype: torch.dtype = torch.float32,
) -> tuple[FilterMeans, list[str]]:
    """Per-filter means of ``model`` on ``files`` (resized to ``short_side``); also the
    skipped files.

    ``dtype=torch.float64`` runs the network itself in float64 (slower; for exactness checks).
    """
    model = model.to(dtype=dtype, memory_format=torch.channels_last)
    skipped: list[str] = []
    loaded = network_inputs(files, prep, short_side, skipped)
    batches = _with_progress((x.to(dtype) for x in loaded), len(files), progress, desc)
    with torch.inference_mode():
        means = activation_means(model, batches)
    return means, skipped


def calibrate(
    source: WeightSource, images: ImageFolder, pooling: Pooling = "max", progress: bool = True
) -> tuple[FilterMeans, list[str]]:
    """Measure ``source``'s per-filter means on ``images``.

    Pooling defaults to max: the network as it was trained (Gatys et al. normalise the trained
    network and only then swap in average pooling for synthesis).
    """
    check_short_side(images.short_side)
    files = images.files()
    model = source.build(pooling=pooling)
    means, skipped = measure_means(model, files, source.preprocessing, images.short_side, progress)
    means.meta = {
        "weights": {"id": source.id, "sha256": source.sha256, "arch": source.arch},
        "preprocessing": source.preprocessing.name,
        "pooling": pooling,
        "image_size": {"short_side": images.short_side},
        "calibration_set": {
            "folder": images.name,
            "files": len(files),
            "skipped": len(skipped),
        },
        "created": dt.date.today().isoformat(),
        "normstyle": __version__,
    }
    return means, skipped


@dataclass
class NormalizedNetwork:
    """A network normalised on a folder: the means it was calibrated with, the means it has
    afterwards on the same images (if measured), and the metadata its file carries."""

    model: nn.Module
    means: FilterMeans
    after: FilterMeans | None
    skipped: list[str]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def dead_count(self) -> int:
        """Filters whose mean was 0 on the calibration images (left as they are)."""
        return sum(len(d) for d in self.means.dead().values())


def network_metadata(source: WeightSource, means: FilterMeans, method: Method) -> dict[str, Any]:
    """What a saved normalised network says about itself (its file's ``normstyle`` metadata)."""
    return {
        **means.to_json(),
        # Only the cascade keeps the network's function (features = original/μ); the naive
        # division gives a different network, which must not pass for a normalised one.
        "normalized": method == "cascade",
        "function_preserving": method == "cascade",
        "method": method,
        "preprocessing": source.preprocessing.name,
    }


def normalize_folder(
    source: WeightSource,
    images: ImageFolder,
    pooling: Pooling = "max",
    method: Method = "cascade",
    check: bool = True,
    progress: bool = True,
) -> NormalizedNetwork:
    """Calibrate ``source`` on ``images``, normalise it, and (``check``) re-measure the result
    on the same images."""
    if source.meta.get("normalized"):
        raise OptionError(f"weights '{source.id}' are already normalised")
    means, skipped = calibrate(source, images, pooling, progress)
    model = normalize(source.build(pooling=pooling), means, method)
    after = None
    if check:
        prep, side = source.preprocessing, images.short_side
        after, _ = measure_means(model, images.files(), prep, side, progress, "check")
    return NormalizedNetwork(model, means, after, skipped, network_metadata(source, means, method))


@dataclass(frozen=True)
class CalibrationRow:
    """One layer of a calibration: its means before, and |μ − 1| after normalisation."""

    layer: str
    filters: int
    dead: int
    low: float  # smallest, median and largest mean of the live filters (of all, if none live)
    median: float
    high: float
    max_error_after: float | None


def calibration_table(means: FilterMeans, after: FilterMeans | None) -> list[CalibrationRow]:
    """Per layer, the means measured and, where ``after`` is given, the largest |μ − 1| of the
    normalised network's live filters (those dead at calibration left out)."""
    checks = {row.layer: row for row in check_means(after, means.dead())} if after else {}
    rows = []
    for name, mu in means.means.items():
        live = mu[mu > 0]
        live = live if live.numel() else mu
        rows.append(
            CalibrationRow(
                layer=name,
                filters=mu.numel(),
                dead=int((mu == 0).sum()),
                low=float(live.min()),
                median=float(live.median()),
                high=float(live.max()),
                max_error_after=checks[name].max_error if name in checks else None,
            )
        )
    return rows


def dead_filters(value: object, where: str) -> dict[str, list[int]]:
    """The ``dead`` entry of a network's metadata: layer name → filter indices."""
    if not isinstance(value, Mapping) or not all(
        isinstance(layer, str)
        and isinstance(indices, list)
        and all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in indices)
        for layer, indices in value.items()
    ):
        raise InputError(f"{where}: its metadata's 'dead' is not a map of layers to filter indices")
    return dict(value)


@dataclass
class Verification:
    """A saved normalised network measured on other images."""

    rows: list[LayerCheck]
    images: int
    pooling: str
    skipped: list[str]


def verify_network(
    source: WeightSource, images: ImageFolder, progress: bool = True
) -> Verification:
    """Per layer, how far a saved normalised network's live filters are from mean 1 on
    ``images`` (with the pooling it was calibrated with)."""
    if source.meta.get("method") == "naive":
        raise OptionError(
            f"{source.id}: a naive rescaling, not a normalised network (its function changed)"
        )
    if not source.meta.get("normalized"):
        raise OptionError(f"{source.id}: not a normalised network (no metadata)")
    pooling = source.meta.get("pooling", "max")
    if pooling not in ("max", "avg"):
        raise OptionError(f"{source.id}: metadata names pooling {pooling!r}")
    dead = dead_filters(source.meta.get("dead", {}), source.id)
    files = images.files()
    model = source.build(pooling=pooling).to(memory_format=torch.channels_last)
    skipped: list[str] = []
    inputs = network_inputs(files, source.preprocessing, images.short_side, skipped)
    with torch.inference_mode():
        rows = verify(model, _with_progress(inputs, len(files), progress, "verify"), dead)
    return Verification(rows, len(files) - len(skipped), pooling, skipped)


def compare_on_folder(
    source: WeightSource,
    images: ImageFolder,
    means: FilterMeans | None = None,
    pooling: Pooling = "max",
    progress: bool = True,
) -> tuple[list[MethodDrift], int]:
    """The cascade and naive methods side by side on ``images``, with ``means`` (calibrated on
    the same images where none are given); also the number of images."""
    files = images.files()
    if means is None:
        means, _ = calibrate(source, images, pooling, progress)
    model = source.build(pooling=pooling)
    batches = network_inputs(
        files, source.preprocessing, images.short_side, bytes_per_pixel=COMPARE_BYTES_PER_PIXEL
    )
    return compare_methods(model, means, batches), len(files)
