"""Small random networks for fast tests, and the command line of a stylisation."""

from __future__ import annotations

import sys
from collections import OrderedDict

import torch
from torch import nn


def random_relu_net(
    pooling: str = "max", head: bool = False, batch_norm: bool = False, seed: int = 0
) -> nn.Sequential:
    """conv-[bn]-relu ×2, pool, conv-[bn]-relu, pool [, flatten, linear-relu-linear]."""
    generator = torch.Generator().manual_seed(seed)
    pool = nn.MaxPool2d if pooling == "max" else nn.AvgPool2d
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    widths = [(3, 8), (8, 12), (12, 6)]
    for index, (cin, cout) in enumerate(widths, start=1):
        layers[f"conv{index}"] = nn.Conv2d(cin, cout, 3, padding=1)
        if batch_norm:
            layers[f"bn{index}"] = nn.BatchNorm2d(cout)
        layers[f"relu{index}"] = nn.ReLU()
        if index in (2, 3):
            layers[f"pool{index}"] = pool(2, 2)
    if head:
        layers["flatten"] = nn.Flatten()
        layers["fc1"] = nn.Linear(6 * 4 * 4, 10)
        layers["relu_fc"] = nn.ReLU()
        layers["fc2"] = nn.Linear(10, 5)
    net = nn.Sequential(layers)
    with torch.no_grad():
        for module in net.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                module.weight.normal_(0, 0.5, generator=generator)
                module.bias.uniform_(-0.1, 0.4, generator=generator)  # mostly alive filters
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5, generator=generator)
                module.running_var.uniform_(0.5, 2.0, generator=generator)
                module.weight.uniform_(0.5, 1.5, generator=generator)
                module.bias.uniform_(0.0, 0.5, generator=generator)
    return net.eval().requires_grad_(False)


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    """‖a − b‖ / ‖b‖ in float64."""
    return float((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-300))


# The stylize command on the two built-in images, as a user would start it (a new process).
STYLIZE_BUILTINS = [
    sys.executable,
    "-m",
    "normstyle",
    "stylize",
    "builtin:grace_hopper",
    "builtin:swirls",
]
