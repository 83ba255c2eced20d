"""Per-filter mean activations μ^l: measured in one pass over images, kept with their
provenance, and read from and written to the means file format (``normstyle-filter-means/1``)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from normstyle.errors import InputError
from normstyle.io.files import open_regular_file
from normstyle.normalization.layout import plan
from normstyle.statistics.engine import collect

MEANS_FORMAT = "normstyle-filter-means/1"


@dataclass
class FilterMeans:
    """Per-filter mean activations μ^l of a network on a calibration set, with provenance."""

    means: dict[str, torch.Tensor]  # conv layer name → float64 (C,), measured after its ReLU
    images: int = 0
    positions: dict[str, int] = field(default_factory=dict)  # values per channel, per layer
    meta: dict[str, Any] = field(default_factory=dict)  # weights id/sha256, sizes, pooling, date

    def dead(self) -> dict[str, list[int]]:
        """Filters whose mean is exactly 0 on the calibration set (they cannot be normalised)."""
        return {name: torch.nonzero(mu == 0).flatten().tolist() for name, mu in self.means.items()}

    def scales(self) -> dict[str, torch.Tensor]:
        """The divisors actually used: μ, with 1 for dead filters."""
        return {
            name: torch.where(mu > 0, mu, torch.ones_like(mu)) for name, mu in self.means.items()
        }

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (floats exact: Python's repr round-trips float64)."""
        return {
            "format": MEANS_FORMAT,
            **self.meta,
            "images": self.images,
            "positions": self.positions,
            "dead": {k: v for k, v in self.dead().items() if v},
            "means": {name: mu.tolist() for name, mu in self.means.items()},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> FilterMeans:
        """Inverse of :meth:`to_json`."""
        if data.get("format") != MEANS_FORMAT:
            raise InputError(f"not a normstyle means file (format {data.get('format')!r})")
        meta = {
            k: v
            for k, v in data.items()
            if k not in ("format", "images", "positions", "dead", "means")
        }
        means = {}
        for name, values in data["means"].items():
            if not isinstance(values, list) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in values
            ):
                raise InputError(f"means of {name}: expected a list of numbers")
            mu = torch.tensor(values, dtype=torch.float64)
            if not bool(torch.isfinite(mu).all()) or bool((mu < 0).any()):
                raise InputError(f"means of {name}: every mean must be a finite number ≥ 0")
            means[str(name)] = mu
        return cls(
            means=means,
            images=int(data["images"]),
            positions={k: int(v) for k, v in data["positions"].items()},
            meta=meta,
        )

    @classmethod
    def load(cls, path: Any) -> FilterMeans:
        """Read a means JSON file."""
        try:
            with open_regular_file(Path(path)) as handle:
                data = json.loads(handle.read().decode("utf-8"))
            if not isinstance(data, dict):
                raise InputError(f"expected a JSON object, not a {type(data).__name__}")
            return cls.from_json(data)
        except (OSError, KeyError, TypeError, ValueError, AttributeError) as error:
            if isinstance(error, InputError):
                message = str(error)
                prefix = "" if message.startswith(f"{path}:") else f"{path}: "
                raise InputError(prefix + message) from None
            raise InputError(
                f"{path}: cannot read means ({' '.join(str(error).split())})"
            ) from None


def activation_means(
    model: nn.Module,
    batches: Iterable[torch.Tensor],
    forward: Callable[[torch.Tensor], Any] | None = None,
) -> FilterMeans:
    """μ_i^l for every normalisable conv layer of ``model``, in one pass over ``batches``.

    Measured after each conv's ReLU on the network as given (the original one), accumulated in
    float64; every position of every image counts once, whatever the image sizes.
    """
    steps = plan(model).steps
    relu_to_conv = {step.relu: step.conv for step in steps}
    images = 0

    def counted(batches: Iterable[torch.Tensor]) -> Iterable[torch.Tensor]:
        nonlocal images
        for batch in batches:
            images += batch.shape[0]
            yield batch

    stats = collect(model, counted(batches), list(relu_to_conv), forward=forward, track_zeros=False)
    if images == 0:
        raise InputError("no calibration images")
    for relu, s in stats.items():
        if not bool(torch.isfinite(s.mean).all()):
            raise InputError(
                f"the mean activations of {relu_to_conv[relu]} are not finite: the network"
                " produces NaN or inf on these images"
            )
    return FilterMeans(
        means={relu_to_conv[relu]: s.mean for relu, s in stats.items()},
        images=images,
        positions={relu_to_conv[relu]: s.count for relu, s in stats.items()},
    )
