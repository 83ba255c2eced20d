"""``stats`` diagnostics: activation statistics of any model on a folder of images."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch
from torch import nn

from normstyle.report import LayerSummary, summarize
from normstyle.stats import HistogramSpec, collect


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
