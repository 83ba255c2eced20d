"""A network as a chain of named modules: the shape every tool here (features, statistics,
normalisation) works on. ``nn.Sequential`` and :class:`~normstyle.nets.vgg.VGG` are chains."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable

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
    previous: nn.Module | None = None
    previous_kept = True  # the caller's input is never modified
    for name, module in layers:
        if not remaining:
            break
        if isinstance(module, nn.ReLU) and not previous_kept and isinstance(previous, _SAFE):
            x = _relu_in_place(module, x)
        else:
            x = module(x)
        previous, previous_kept = module, name in remaining
        if previous_kept:
            out[name] = x
            remaining.discard(name)
    return out


# Layers whose backward pass does not need their own output, so a ReLU may overwrite it.
_SAFE = (nn.Conv2d, nn.BatchNorm2d, nn.Linear)


def _relu_in_place(module: nn.ReLU, x: torch.Tensor) -> torch.Tensor:
    """Apply ``module`` in place (its hooks still run): a conv output nobody asked for need not
    be kept beside its rectified copy — about a third less activation memory for VGG."""
    inplace = module.inplace
    module.inplace = True
    try:
        return module(x)
    finally:
        module.inplace = inplace


def truncated_forward(model: nn.Module, names: Iterable[str]) -> Callable[[torch.Tensor], object]:
    """A forward that stops after the deepest of ``names`` when ``model`` is a chain (VGG,
    nn.Sequential) whose layers include them all; otherwise the model's own forward."""
    chain = chain_of(model)
    order = {name: index for index, (name, _) in enumerate(chain)}
    wanted = list(names)
    is_chain = isinstance(model, nn.Sequential) or hasattr(model, "layer_names")
    if not is_chain or not wanted or any(name not in order for name in wanted):
        return model
    deepest = max(wanted, key=order.__getitem__)
    return lambda x: run_chain(chain, x, [deepest])
