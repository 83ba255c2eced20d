"""VGG-11/13/16/19 (Simonyan & Zisserman 2015) and their batch-norm variants, with the layer names
used in the style-transfer literature: ``conv1_1``, ``relu1_1``, ``pool1`` … ``relu5_4``, ``pool5``,
and an optional classifier head ``fc6`` … ``fc8``."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Literal, overload

import torch
from torch import nn

from normstyle.errors import OptionError, did_you_mean
from normstyle.nets.chain import chain_of, run_chain

Pooling = Literal["max", "avg"]

# Convolutions per block; every block ends in a 2×2 pooling layer. Widths are shared.
_CONVS_PER_BLOCK = {
    "vgg11": (1, 1, 2, 2, 2),
    "vgg13": (2, 2, 2, 2, 2),
    "vgg16": (2, 2, 3, 3, 3),
    "vgg19": (2, 2, 4, 4, 4),
}
_WIDTHS = (64, 128, 256, 512, 512)
ARCHITECTURES: tuple[str, ...] = tuple(
    name for base in _CONVS_PER_BLOCK for name in (base, f"{base}_bn")
)


def _split_arch(arch: str) -> tuple[str, bool]:
    if arch not in ARCHITECTURES:
        raise OptionError(f"unknown architecture '{arch}'{did_you_mean(arch, ARCHITECTURES)}")
    return arch.removesuffix("_bn"), arch.endswith("_bn")


def _build_layers(
    arch: str, pooling: Pooling, head: bool, num_classes: int
) -> OrderedDict[str, nn.Module]:
    base, batch_norm = _split_arch(arch)
    if pooling not in ("max", "avg"):
        raise OptionError(f"pooling must be 'max' or 'avg', not '{pooling}'")
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    channels = 3
    for block, (convs, width) in enumerate(zip(_CONVS_PER_BLOCK[base], _WIDTHS), start=1):
        for k in range(1, convs + 1):
            layers[f"conv{block}_{k}"] = nn.Conv2d(channels, width, kernel_size=3, padding=1)
            if batch_norm:
                layers[f"bn{block}_{k}"] = nn.BatchNorm2d(width)
            # Not in-place: the conv outputs we hand out must survive the next layer.
            layers[f"relu{block}_{k}"] = nn.ReLU()
            channels = width
        # Gatys et al. use average pooling for synthesis; max is what the net was trained with.
        pool = nn.MaxPool2d if pooling == "max" else nn.AvgPool2d
        layers[f"pool{block}"] = pool(kernel_size=2, stride=2)
    if head:
        layers["avgpool"] = nn.AdaptiveAvgPool2d((7, 7))
        layers["flatten"] = nn.Flatten(1)
        layers["fc6"] = nn.Linear(512 * 7 * 7, 4096)
        layers["relu6"] = nn.ReLU()
        layers["drop6"] = nn.Dropout()
        layers["fc7"] = nn.Linear(4096, 4096)
        layers["relu7"] = nn.ReLU()
        layers["drop7"] = nn.Dropout()
        layers["fc8"] = nn.Linear(4096, num_classes)
    return layers


def vgg_layer_names(arch: str = "vgg19", head: bool = False) -> list[str]:
    """All layer names of ``arch`` in order (``conv1_1``, ``relu1_1``, …, ``pool5``, [``fc6``…])."""
    return list(_build_layers(arch, "max", head, 1000))


def torchvision_names(arch: str = "vgg19", head: bool = False) -> dict[str, str]:
    """Map our layer names to torchvision's module paths (``conv1_1`` → ``features.0``,
    ``fc6`` → ``classifier.0``) for the layers that hold parameters or buffers."""
    mapping: dict[str, str] = {}
    in_head = False
    index = 0
    for name in vgg_layer_names(arch, head):
        if name == "avgpool":
            in_head, index = True, 0
            continue
        if name == "flatten":
            continue
        if name.startswith(("conv", "bn", "fc")):
            mapping[name] = f"{'classifier' if in_head else 'features'}.{index}"
        index += 1
    return mapping


class VGG(nn.Module):
    """A VGG network whose children are its named layers, in order.

    Parameters are frozen (``requires_grad=False``) and the module starts in eval mode: it is a
    fixed feature extractor. ``state_dict`` keys use our names (``conv1_1.weight``).
    """

    def __init__(
        self,
        arch: str = "vgg19",
        pooling: Pooling = "max",
        head: bool = False,
        num_classes: int = 1000,
    ) -> None:
        super().__init__()
        self.arch = arch
        self.pooling: Pooling = pooling
        self.has_head = head
        for name, module in _build_layers(arch, pooling, head, num_classes).items():
            self.add_module(name, module)
        self.requires_grad_(False)
        self.eval()

    @property
    def layer_names(self) -> list[str]:
        """The names of all layers, in order."""
        return [name for name, _ in self.named_children()]

    @overload
    def forward(self, x: torch.Tensor, layers: None = None) -> torch.Tensor: ...

    @overload
    def forward(self, x: torch.Tensor, layers: Sequence[str]) -> dict[str, torch.Tensor]: ...

    def forward(
        self, x: torch.Tensor, layers: Sequence[str] | None = None
    ) -> torch.Tensor | dict[str, torch.Tensor]:
        """With ``layers``: a dict of those layers' outputs, computing nothing past the deepest one.
        Without: the output of the last layer (logits when the net has a head)."""
        chain = chain_of(self)
        if layers is None:
            return run_chain(chain, x, [chain[-1][0]])[chain[-1][0]]
        return run_chain(chain, x, layers)

    def extra_repr(self) -> str:
        return f"arch={self.arch}, pooling={self.pooling}, head={self.has_head}"
