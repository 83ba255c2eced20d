"""A network as a chain of named modules: the shape every tool here (features, statistics,
normalisation) works on. ``nn.Sequential`` and :class:`~normstyle.models.vgg.VGG` are chains."""

from __future__ import annotations

from collections.abc import Collection

import torch
from torch import nn

from normstyle.errors import check_names


def chain_of(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """Return ``model``'s layers in order as ``(name, module)`` pairs.

    Works for ``nn.Sequential`` and for any module whose ``forward`` applies its direct children
    one after the other (our VGG). Nested sequentials are flattened to dotted names.
    """
    layers: list[tuple[str, nn.Module]] = []
    for name, child in model.named_children():
        if isinstance(child, nn.Sequential):
            layers.extend((f"{name}.{sub}", module) for sub, module in chain_of(child))
        else:
            layers.append((name, child))
    return layers


def run_chain(
    layers: list[tuple[str, nn.Module]], x: torch.Tensor, wanted: Collection[str]
) -> dict[str, torch.Tensor]:
    """Apply ``layers`` to ``x`` and return the outputs named in ``wanted``.

    Stops after the deepest wanted layer, so nothing beyond it is computed.
    """
    names = [name for name, _ in layers]
    check_names(wanted, names)
    remaining = set(wanted)
    out: dict[str, torch.Tensor] = {}
    for name, module in layers:
        if not remaining:
            break
        x = module(x)
        if name in remaining:
            out[name] = x
            remaining.discard(name)
    return out
