"""How well a network is normalised: per-layer |μ − 1| on some images, and the drift of the
cascade and naive methods from original/μ side by side."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from normstyle.errors import InputError
from normstyle.nets.chain import chain_of, run_chain
from normstyle.normalization.cascade import normalize
from normstyle.normalization.layout import fold_batch_norm, plan
from normstyle.normalization.means import FilterMeans, activation_means


@dataclass
class LayerCheck:
    """How close a normalised layer's means are to 1 on some images."""

    layer: str
    filters: int
    dead: int
    median_error: float  # median over live filters of |μ − 1|
    p95_error: float
    max_error: float


def check_means(
    means: FilterMeans, exclude: Mapping[str, Iterable[int]] | None = None
) -> list[LayerCheck]:
    """Per layer: |μ − 1| over live filters (``exclude``: filters known dead at calibration)."""
    rows = []
    for name, mu in means.means.items():
        live = mu > 0
        if exclude and name in exclude:
            known = list(exclude[name])
            if any(not 0 <= index < mu.numel() for index in known):
                raise InputError(f"dead filters of {name} out of range (it has {mu.numel()})")
            live[known] = False
        error = (mu[live] - 1).abs()
        if error.numel() == 0:
            error = torch.zeros(1, dtype=torch.float64)
        rows.append(
            LayerCheck(
                layer=name,
                filters=mu.numel(),
                dead=int((~live).sum()),
                median_error=float(error.median()),
                p95_error=float(torch.quantile(error, 0.95)),
                max_error=float(error.max()),
            )
        )
    return rows


@dataclass
class MethodDrift:
    """How far a normalised network's features drift from original/μ at one layer."""

    layer: str
    cascade_error: float  # ‖cascade − original/μ‖ / ‖original/μ‖ (after the ReLU)
    naive_error: float  # the same for the naive method
    naive_flips: float  # fraction of pre-activations whose sign (ReLU on/off) differs


def compare_methods(
    model: nn.Module, means: FilterMeans, batches: Iterable[torch.Tensor]
) -> list[MethodDrift]:
    """Run the original, cascade- and naive-normalised networks side by side on ``batches``."""
    original = fold_batch_norm(model)
    steps = plan(original).steps
    nets = {
        "original": original,
        "cascade": normalize(model, means),
        "naive": normalize(model, means, "naive"),
    }
    names = [name for step in steps for name in (step.conv, step.relu)]
    scales = means.scales()
    sums = {
        key: torch.zeros(len(steps), dtype=torch.float64)
        for key in ("ref", "cascade", "naive", "flips", "n")
    }
    with torch.inference_mode():
        for x in batches:
            features = {key: run_chain(chain_of(net), x, names) for key, net in nets.items()}
            for index, step in enumerate(steps):
                shape = (1, -1) + (1,) * (features["original"][step.relu].dim() - 2)
                reference = features["original"][step.relu].double() / scales[step.conv].view(shape)
                sums["ref"][index] += reference.square().sum()
                for key in ("cascade", "naive"):
                    sums[key][index] += (
                        (features[key][step.relu].double() - reference).square().sum()
                    )
                flipped = (features["original"][step.conv] > 0) != (
                    features["naive"][step.conv] > 0
                )
                sums["flips"][index] += flipped.sum()
                sums["n"][index] += flipped.numel()
    reference_norm = sums["ref"].sqrt().clamp_min(1e-300)
    return [
        MethodDrift(
            layer=step.conv,
            cascade_error=float(sums["cascade"][i].sqrt() / reference_norm[i]),
            naive_error=float(sums["naive"][i].sqrt() / reference_norm[i]),
            naive_flips=float(sums["flips"][i] / max(1.0, float(sums["n"][i]))),
        )
        for i, step in enumerate(steps)
    ]


def verify(
    normalized: nn.Module,
    batches: Iterable[torch.Tensor],
    dead: Mapping[str, Iterable[int]] | None = None,
    forward: Callable[[torch.Tensor], Any] | None = None,
) -> list[LayerCheck]:
    """Measure a normalised network's per-filter means on ``batches`` and report, per layer,
    how far the live filters are from 1 (``dead``: filters known dead at calibration)."""
    return check_means(activation_means(normalized, batches, forward), dead)
