"""Mean-activation normalisation of a ReLU conv net (Gatys et al. 2016, §2), in cascade.

For conv layer l with filters i and per-filter mean activation μ_i^l (measured after its ReLU,
over a set of images and all positions, on the *original* network), with D^{l-1} = diag(μ^{l-1})
and D^0 = I:

    W_i^l ← W_i^l · D^{l-1} / μ_i^l        b_i^l ← b_i^l / μ_i^l

Then every normalised feature map equals the original divided by μ_i^l exactly, because ReLU,
zero padding, max and average pooling all commute with a positive per-channel scale. A classifier
head absorbs the last factor (its first Linear multiplies each input column by the μ of the channel
it came from), so logits are unchanged. The "naive" method divides by μ_i^l only: layer l then sees
inputs divided by μ^{l-1}, which changes W·P + b by a different factor per input channel and can
flip the sign before the ReLU — a different function (kept for teaching and comparison).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from normstyle.errors import InputError, OptionError
from normstyle.images import open_regular_file
from normstyle.models.chain import chain_of, run_chain
from normstyle.stats import collect

Method = Literal["cascade", "naive"]
MEANS_FORMAT = "normstyle-filter-means/1"

# Modules through which a positive per-channel scale passes unchanged: f(s ⊙ x) = s ⊙ f(x).
SCALE_EQUIVARIANT = (
    nn.ReLU,
    nn.MaxPool2d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool2d,
    nn.Dropout,
    nn.Dropout2d,
    nn.Identity,
    nn.Flatten,
)


@dataclass(frozen=True)
class ConvStep:
    """One normalisable conv layer: its name, optional batch norm and the ReLU that defines μ."""

    conv: str
    relu: str
    batch_norm: str | None = None


@dataclass(frozen=True)
class Plan:
    """What :func:`normalize` will touch, in chain order."""

    steps: tuple[ConvStep, ...]
    head: str | None  # the first Linear after the convs, which absorbs the last scale
    head_spatial: int = 1  # how many flattened inputs each channel feeds the head


def plan(model: nn.Module) -> Plan:
    """Check that ``model`` can be normalised exactly and say how.

    Accepts chains of Conv2d (zero padding, groups=1) [+ BatchNorm2d] + ReLU, max/avg pooling,
    dropout, identity, flatten, and a Linear head after which anything goes. Raises
    :class:`OptionError` naming the first layer that breaks scale-equivariance.
    """
    steps: list[ConvStep] = []
    conv: str | None = None
    batch_norm: str | None = None
    previous: nn.Module | None = None
    channels = 0
    for name, module in chain_of(model):
        if isinstance(module, nn.Conv2d):
            if conv is not None:
                raise OptionError(f"conv layer {conv} is not followed by a ReLU")
            if module.padding_mode != "zeros" or module.groups != 1:
                raise OptionError(
                    f"conv layer {name}: only zero padding and groups=1 are supported"
                )
            conv, batch_norm, channels = name, None, module.out_channels
        elif isinstance(module, nn.BatchNorm2d):
            if conv is None or not isinstance(previous, nn.Conv2d):
                raise OptionError(
                    f"batch norm {name} does not directly follow a conv: cannot fold it"
                )
            batch_norm = name
        elif isinstance(module, nn.ReLU):
            if conv is not None:
                steps.append(ConvStep(conv, name, batch_norm))
                conv = None
        elif isinstance(module, nn.Linear):
            if conv is not None:
                raise OptionError(f"conv layer {conv} is not followed by a ReLU")
            if not steps:
                raise OptionError(
                    "no conv + ReLU layers before the first Linear: nothing to normalise"
                )
            if module.in_features % channels:
                raise OptionError(
                    f"{name} has {module.in_features} inputs, not a multiple of {channels}"
                )
            return Plan(tuple(steps), name, module.in_features // channels)
        elif isinstance(module, SCALE_EQUIVARIANT):
            if conv is not None and not isinstance(module, nn.Identity):
                raise OptionError(f"conv layer {conv} is followed by {name} before its ReLU")
        else:
            raise OptionError(
                f"layer {name} ({type(module).__name__}) is not scale-equivariant:"
                " normalisation would change what the network computes"
            )
        previous = module
    if conv is not None:
        raise OptionError(f"conv layer {conv} is not followed by a ReLU")
    if not steps:
        raise OptionError("the network has no conv + ReLU layers to normalise")
    return Plan(tuple(steps), None)


def _get(model: nn.Module, name: str) -> nn.Module:
    return model.get_submodule(name)


def _set(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def fold_batch_norm(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every BatchNorm2d folded into the conv before it (eval-mode
    statistics) and replaced by ``nn.Identity`` — same outputs in eval mode, layer names kept."""
    folded = copy.deepcopy(model)
    for step in plan(folded).steps:
        if step.batch_norm is None:
            continue
        conv, bn = _get(folded, step.conv), _get(folded, step.batch_norm)
        assert isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)
        if bn.running_mean is None or bn.running_var is None:
            raise OptionError(
                f"batch norm {step.batch_norm} keeps no running statistics"
                " (track_running_stats=False): it normalises with each batch's own, so it"
                " cannot be folded into a fixed conv"
            )
        mean, var = bn.running_mean.double(), bn.running_var.double()
        # affine=False: no learnt scale and shift (γ = 1, β = 0).
        gamma = bn.weight.double() if bn.weight is not None else torch.ones_like(mean)
        beta = bn.bias.double() if bn.bias is not None else torch.zeros_like(mean)
        scale = gamma / torch.sqrt(var + bn.eps)
        bias = conv.bias.double() if conv.bias is not None else torch.zeros_like(scale)
        weight = conv.weight.double() * scale.view(-1, 1, 1, 1)
        new_bias = (bias - mean) * scale + beta
        conv.weight.data = weight.to(conv.weight.dtype)
        conv.bias = nn.Parameter(
            new_bias.to(conv.weight.dtype), requires_grad=conv.weight.requires_grad
        )
        _set(folded, step.batch_norm, nn.Identity())
    return folded


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


def normalize(model: nn.Module, means: FilterMeans, method: Method = "cascade") -> nn.Module:
    """A normalised copy of ``model`` (batch norm folded first).

    ``cascade`` (default) is exact: features become original/μ and logits are unchanged.
    ``naive`` divides each layer by its own μ only (not an equivalent network; for teaching).
    """
    if method not in ("cascade", "naive"):
        raise OptionError(f"method must be 'cascade' or 'naive', not '{method}'")
    normalized = fold_batch_norm(model)
    layout = plan(normalized)
    scales = means.scales()
    missing = [step.conv for step in layout.steps if step.conv not in scales]
    if missing:
        raise OptionError(f"no means for layer {missing[0]}")
    incoming: torch.Tensor | None = None  # D^{l-1}: the scale of the channels flowing in
    for step in layout.steps:
        conv = _get(normalized, step.conv)
        assert isinstance(conv, nn.Conv2d)
        s = scales[step.conv]
        if s.shape != (conv.out_channels,):
            raise OptionError(f"{step.conv}: {s.numel()} means for {conv.out_channels} filters")
        weight = conv.weight.double()
        if method == "cascade" and incoming is not None:
            weight = weight * incoming.view(1, -1, 1, 1)  # undo the previous layer's scaling
        conv.weight.data = (weight / s.view(-1, 1, 1, 1)).to(conv.weight.dtype)
        if conv.bias is not None:
            conv.bias.data = (conv.bias.double() / s).to(conv.bias.dtype)
        incoming = s
    if layout.head is not None and method == "cascade" and incoming is not None:
        head = _get(normalized, layout.head)
        assert isinstance(head, nn.Linear)
        # Flatten orders inputs channel-major: channel c feeds columns c·S … c·S + S − 1.
        column_scale = incoming.repeat_interleave(layout.head_spatial)
        head.weight.data = (head.weight.double() * column_scale.view(1, -1)).to(head.weight.dtype)
    return normalized


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
