"""Per-layer, per-channel activation statistics, streamed over any number of batches.

One engine serves normalisation (per-filter means), ``normstyle stats`` diagnostics and the lab
experiments. It is the reduction spatial batch norm uses: for an output of shape (N, C, H, W) each
channel's statistic runs over N·H·W values — every position of every image counts once, whatever
the image sizes. Sums accumulate in float64.

    with ActivationStats(model, ["relu*"]) as stats:
        for batch in batches:
            model(batch)
    stats["relu4_2"].mean  # float64 tensor (C,)
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from normstyle.errors import InputError, OptionError, did_you_mean
from normstyle.nets.chain import truncated_forward


@dataclass
class HistogramSpec:
    """Fixed bins for a histogram of all values of a layer (all channels together)."""

    bins: int = 100
    low: float = -5.0
    high: float = 5.0


@dataclass
class RunningStats:
    """Streaming statistics of one layer's output, per channel (dimension 1).

    ``moments=1`` tracks only what normalisation needs (sums, counts, zeros: one cheap pass);
    ``moments=2`` adds variance (Chan et al.'s parallel update, stable for any mean), min and max.
    """

    moments: int = 1
    histogram: HistogramSpec | None = None
    track_zeros: bool = True  # count exact zeros (one more pass over the data)
    count: int = 0  # values per channel seen so far (N·H·W summed over batches)
    sum: torch.Tensor | None = None  # float64 (C,)
    zeros: torch.Tensor | None = None  # float64 (C,): how many values were exactly 0
    m2: torch.Tensor | None = None  # float64 (C,): Σ (x − mean)²
    minimum: torch.Tensor | None = None
    maximum: torch.Tensor | None = None
    hist: torch.Tensor | None = None  # float64 (bins,), counts; values outside go to end bins
    batches: int = field(default=0)

    def update(self, output: torch.Tensor) -> None:
        """Add a batch: ``output`` of shape (N, C, …)."""
        x = output.detach()
        if x.dim() < 2:
            raise ValueError(f"expected (N, C, ...) activations, got shape {tuple(x.shape)}")
        if x.dtype in (torch.float16, torch.bfloat16):
            x = x.float()
        dims = [d for d in range(x.dim()) if d != 1]
        n = x.numel() // x.shape[1]
        # A float32 batch is reduced in float32 (torch's pairwise sums: ~1e-7 relative, and 30×
        # faster than casting to float64 first); the running totals across batches are float64.
        # Counts stay exact in float32 up to 2**24 values per channel and batch; beyond, and for
        # float64 activations (whose precision a float32 sum would throw away), use float64.
        exact = torch.float32 if n < 2**24 and x.dtype != torch.float64 else torch.float64
        batch_sum = x.sum(dim=dims, dtype=exact).double()
        batch_zeros = None
        if self.track_zeros:
            batch_zeros = n - x.abs().sign().sum(dim=dims, dtype=exact).double()
        if self.sum is None:
            self.sum = torch.zeros(x.shape[1], dtype=torch.float64, device=x.device)
            self.zeros = torch.zeros_like(self.sum)
            if self.moments >= 2:
                self.m2 = torch.zeros_like(self.sum)
                self.minimum = torch.full_like(self.sum, float("inf"))
                self.maximum = torch.full_like(self.sum, float("-inf"))
            if self.histogram is not None:
                self.hist = torch.zeros(self.histogram.bins, dtype=torch.float64, device=x.device)
        elif x.shape[1] != self.sum.shape[0]:
            raise ValueError(f"channel count changed from {self.sum.shape[0]} to {x.shape[1]}")
        if self.moments >= 2:
            assert self.m2 is not None and self.minimum is not None and self.maximum is not None
            batch_mean = batch_sum / n
            shape = [1] * x.dim()
            shape[1] = -1
            centred = x - batch_mean.to(x.dtype).view(shape)
            batch_m2 = centred.square().sum(dim=dims, dtype=exact).double()
            # Chan et al.: merge (count, mean, M2) of the totals with the batch's.
            delta = batch_mean - (self.sum / self.count if self.count else batch_mean)
            self.m2 += batch_m2 + delta.square() * self.count * n / (self.count + n)
            self.minimum = torch.minimum(self.minimum, x.amin(dim=dims).double())
            self.maximum = torch.maximum(self.maximum, x.amax(dim=dims).double())
        if self.hist is not None and self.histogram is not None:
            spec = self.histogram
            clipped = x.clamp(spec.low, spec.high)
            self.hist += torch.histc(clipped, bins=spec.bins, min=spec.low, max=spec.high).double()
        assert self.zeros is not None
        self.sum += batch_sum
        if batch_zeros is not None:
            self.zeros += batch_zeros
        self.count += n
        self.batches += 1

    def _need(self) -> None:
        if self.sum is None or self.count == 0:
            raise ValueError("no activations recorded for this layer")

    @property
    def mean(self) -> torch.Tensor:
        """Per-channel mean (float64)."""
        self._need()
        assert self.sum is not None
        return self.sum / self.count

    @property
    def var(self) -> torch.Tensor:
        """Per-channel population variance (what BatchNorm normalises with in train mode)."""
        self._need()
        if self.m2 is None:
            raise ValueError("variance was not tracked (use moments=2)")
        return self.m2 / self.count

    @property
    def zero_fraction(self) -> torch.Tensor:
        """Per-channel fraction of values exactly zero (dead ReLU outputs)."""
        self._need()
        if not self.track_zeros:
            raise ValueError("zeros were not tracked (use track_zeros=True)")
        assert self.zeros is not None
        return self.zeros / self.count

    @property
    def overall_mean(self) -> float:
        """Mean over all channels and positions."""
        return float(self.mean.mean())

    @property
    def overall_std(self) -> float:
        """Standard deviation over all channels and positions (pooled, population)."""
        channel_var = self.var
        pooled = channel_var.mean() + (self.mean - self.mean.mean()).square().mean()
        return float(pooled.sqrt())

    @property
    def histogram_edges(self) -> torch.Tensor:
        """The bin edges of ``hist``."""
        if self.histogram is None:
            raise ValueError("no histogram was tracked")
        spec = self.histogram
        return torch.linspace(spec.low, spec.high, spec.bins + 1, dtype=torch.float64)


def select_modules(model: nn.Module, patterns: Sequence[str]) -> list[tuple[str, nn.Module]]:
    """Named sub-modules whose names match any of the glob ``patterns`` (``relu*``, ``fc?``)."""
    named = [(name, module) for name, module in model.named_modules() if name]
    chosen = [
        (name, module)
        for name, module in named
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)
    ]
    names = [name for name, _ in named]
    # For a glob, suggest a stem glob: 'rleu*' → 'relu*' (from relu1_1, relu1_2 …).
    stems = sorted({re.sub(r"[\d_.]+$", "", name) + "*" for name in names})
    for pattern in patterns:
        if not any(fnmatch.fnmatchcase(name, pattern) for name in names):
            choices = stems if any(c in pattern for c in "*?[") else names
            raise OptionError(f"no layer matches '{pattern}'{did_you_mean(pattern, choices)}")
    return chosen


class ActivationStats:
    """Forward hooks that accumulate :class:`RunningStats` for the selected modules.

    The hook handles are kept and removed on ``__exit__`` (or :meth:`remove`), so a model used
    with it thousands of times carries no leftover hooks and holds no activations.
    """

    def __init__(
        self,
        model: nn.Module,
        layers: Sequence[str] = ("*",),
        moments: int = 1,
        histogram: HistogramSpec | None = None,
        track_zeros: bool = True,
    ) -> None:
        self.model = model
        self.modules = select_modules(model, layers)
        self.moments = moments
        self.histogram = histogram
        self.track_zeros = track_zeros
        self.stats: dict[str, RunningStats] = {}
        self._handles: list[torch.utils.hooks.RemovableHandle] = []
        self.reset()

    def reset(self) -> None:
        """Forget everything recorded so far."""
        self.stats = {
            name: RunningStats(self.moments, self.histogram, self.track_zeros)
            for name, _ in self.modules
        }

    def attach(self) -> ActivationStats:
        """Register the hooks (done by ``__enter__``)."""
        if self._handles:
            return self
        for name, module in self.modules:
            # Looked up at call time, so reset() needs no re-attaching.
            self._handles.append(
                module.register_forward_hook(
                    lambda _module, _inputs, output, name=name: self.stats[name].update(output)
                )
            )
        return self

    def remove(self) -> None:
        """Remove every hook this object registered."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    def __enter__(self) -> ActivationStats:
        return self.attach()

    def __exit__(self, *exc_info: object) -> None:
        self.remove()

    def __getitem__(self, name: str) -> RunningStats:
        return self.stats[name]

    @property
    def names(self) -> list[str]:
        """The selected layer names, in the model's order."""
        return [name for name, _ in self.modules]


def collect(
    model: nn.Module,
    batches: Iterable[torch.Tensor],
    layers: Sequence[str] = ("*",),
    moments: int = 1,
    histogram: HistogramSpec | None = None,
    forward: Callable[[torch.Tensor], object] | None = None,
    track_zeros: bool = True,
) -> dict[str, RunningStats]:
    """Run ``model`` (no gradients) on every batch and return the statistics of ``layers``.

    By default a chain (VGG, ``nn.Sequential``) stops after the deepest selected layer, since
    nothing later is observed; ``forward``, if given, is called as ``forward(batch)`` instead.
    """
    seen = 0
    with torch.no_grad(), ActivationStats(model, layers, moments, histogram, track_zeros) as stats:
        run = forward or truncated_forward(model, stats.names)
        for batch in batches:
            run(batch)
            seen += 1
    if seen == 0:
        raise InputError("no batches: there is nothing to compute statistics on")
    return stats.stats
