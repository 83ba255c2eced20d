"""What normalisation may touch: the chain of a ReLU conv net read as conv [+ batch norm] + ReLU
steps, checked for scale-equivariance, and batch norm folded into the conv before it."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import nn

from normstyle.errors import OptionError
from normstyle.nets.chain import chain_of

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


def get_layer(model: nn.Module, name: str) -> nn.Module:
    return model.get_submodule(name)


def set_layer(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, module)


def fold_batch_norm(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every BatchNorm2d folded into the conv before it (eval-mode
    statistics) and replaced by ``nn.Identity`` — same outputs in eval mode, layer names kept."""
    folded = copy.deepcopy(model)
    for step in plan(folded).steps:
        if step.batch_norm is None:
            continue
        conv, bn = get_layer(folded, step.conv), get_layer(folded, step.batch_norm)
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
        set_layer(folded, step.batch_norm, nn.Identity())
    return folded
