"""``stats`` diagnostics: activation statistics of any model on a folder of images."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

from normstyle.nets.inputs import network_inputs
from normstyle.nets.preprocessing import Preprocessing
from normstyle.statistics.engine import HistogramSpec, collect
from normstyle.statistics.report import LayerSummary, summarize

# A forward pass plus the centred and squared copies the variance needs (float32, 64 channels
# at full resolution): ~1.5 kB per pixel.
STATS_BYTES_PER_PIXEL = 1500


def activation_report(
    model: nn.Module,
    batches: Iterable[torch.Tensor],
    layers: Sequence[str] = ("*",),
    histogram: HistogramSpec | None = None,
) -> list[LayerSummary]:
    """Per-layer summaries (mean, std, zeros, per-channel means) of ``model`` on ``batches``.

    ``layers`` are glob patterns over module names (``relu*``, ``features.*``); any
    ``nn.Module`` works. Hooks are removed afterwards and nothing but running sums is kept, so
    memory does not grow with the number of images.
    """
    with torch.inference_mode():
        stats = collect(model, batches, layers, moments=2, histogram=histogram)
    return summarize(stats)


def folder_reports(
    models: Mapping[str, nn.Module],
    files: Sequence[Path],
    prep: Preprocessing,
    short_side: int = 256,
    layers: Sequence[str] = ("relu*",),
    skipped: list[str] | None = None,
) -> dict[str, list[LayerSummary]]:
    """:func:`activation_report` of each of ``models`` (by title) on the images ``files``,
    resized to ``short_side``; files that cannot be used are named in ``skipped`` (once)."""
    reports = {}
    for index, (title, model) in enumerate(models.items()):
        inputs = network_inputs(
            files, prep, short_side, skipped if index == 0 else None, STATS_BYTES_PER_PIXEL
        )
        reports[title] = activation_report(model, inputs, layers)
    return reports
