"""A weight source: where a network's parameters come from, how to load them into a
:class:`~normstyle.nets.vgg.VGG`, and the input preprocessing they were trained with — one
object, so the two never get separated."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from normstyle.errors import InputError, OptionError
from normstyle.nets.preprocessing import Preprocessing
from normstyle.nets.vgg import VGG, Pooling, vgg_layer_names

StateDict = dict[str, torch.Tensor]


@dataclass(frozen=True)
class WeightSource:
    """A loadable set of network weights together with the preprocessing they expect."""

    id: str
    arch: str  # one of normstyle.nets.ARCHITECTURES
    description: str
    preprocessing: Preprocessing
    has_head: bool  # whether the weights include the classifier fc6–fc8
    origin: str  # URL, package file or local path
    loader: Callable[[], StateDict] = field(repr=False, compare=False)
    local_file: Callable[[], Path | None] = field(repr=False, compare=False)
    sha256: str | None = None  # the full digest, where it is known in advance
    meta: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def available_offline(self) -> bool:
        """Whether the weights can be loaded without a download."""
        path = self.local_file()
        return path is not None and path.is_file()

    def load_state_dict(self) -> StateDict:
        """The weights as a state dict in our layer naming (``conv1_1.weight`` …)."""
        return self.loader()

    def build(self, pooling: Pooling = "max", head: bool = False) -> VGG:
        """A frozen :class:`VGG` with these weights (``head`` needs weights that include it)."""
        if head and not self.has_head:
            raise OptionError(f"weights '{self.id}' have no classifier head (fc6–fc8)")
        # Built without data and then given memory: every parameter is loaded below, so the
        # random initialisation would be wasted (~0.2 s of start-up for VGG-19).
        with torch.device("meta"):
            model = VGG(self.arch, pooling=pooling, head=head)
        materialize(model)
        load_into(model, self.load_state_dict(), source=self.id)
        return model


def materialize(model: torch.nn.Module) -> None:
    """Give every parameter and buffer of ``model`` (built on the meta device) uninitialised CPU
    memory of its shape and dtype, in place. ``Module.to_empty`` does the same, but its first
    call imports torch's symbolic-shape machinery: 0.35 s more per process (whole 1-iteration
    runs at 256 px, medians of 10 alternating pairs: 5.52 against 5.17 s; AVX2-only EPYC,
    2026-12-07)."""
    for module in model.modules():
        for name, parameter in module._parameters.items():
            if parameter is not None:
                module._parameters[name] = torch.nn.Parameter(
                    torch.empty(parameter.shape, dtype=parameter.dtype),
                    requires_grad=parameter.requires_grad,
                )
        for name, buffer in module._buffers.items():
            if buffer is not None:
                module._buffers[name] = torch.empty(buffer.shape, dtype=buffer.dtype)


def normalized_id(base_id: str) -> str:
    """The id of the mean-normalised variant of the weight source ``base_id``."""
    return f"{base_id}-normalized"


def load_into(model: torch.nn.Module, state: Mapping[str, torch.Tensor], source: str = "") -> None:
    """Copy ``state`` into ``model``, checking every key and shape first.

    Raises :class:`InputError` naming the first missing layer, wrong shape or unexpected entry.
    Entries for layers the model does not have are an error, except a classifier head when the
    model was built without one (the head is then simply not used).
    """
    where = f"{source}: " if source else ""
    expected = model.state_dict()
    layer_names = {name for name, _ in model.named_children()}
    for key, target in expected.items():
        if key not in state:
            layer, _, attribute = key.rpartition(".")
            raise InputError(
                f"{where}missing {attribute} of layer {layer}"
                f" (expected shape {tuple(target.shape)})"
            )
        if tuple(state[key].shape) != tuple(target.shape):
            layer, _, attribute = key.rpartition(".")
            raise InputError(
                f"{where}layer {layer}: {attribute} has shape {tuple(state[key].shape)},"
                f" expected {tuple(target.shape)}"
            )
    for key in state:
        layer = key.rpartition(".")[0]
        if key not in expected and not (layer.startswith("fc") and layer not in layer_names):
            raise InputError(
                f"{where}unexpected entry '{key}' (not a layer of {model.__class__.__name__})"
            )
    model.load_state_dict({key: state[key] for key in expected}, strict=True)


def parameter_table(source: WeightSource) -> list[tuple[str, tuple[int, ...], int]]:
    """(layer, weight shape, parameter count) for every layer with parameters, without loading."""
    model = VGG(source.arch, head=source.has_head)
    rows = []
    for name in vgg_layer_names(source.arch, source.has_head):
        module = getattr(model, name)
        params = list(module.parameters())
        if params:
            rows.append((name, tuple(module.weight.shape), sum(p.numel() for p in params)))
    return rows
