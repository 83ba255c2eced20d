"""Activation functions (CS231n lecture 7): sigmoid, tanh, ReLU, Leaky ReLU, PReLU, ELU and
Maxout, with their derivatives (from autograd), and the fraction of units each leaves saturated
or dead in the lab's init network (6 layers of width 4096, batch 16, unit-Gaussian input), under
Xavier and Kaiming initialisation."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from normstyle.figures import pyplot, save_figure
from normstyle.lab.common import write_numbers
from normstyle.lab.init import mlp

# Units whose derivative is below this fraction of the activation's largest derivative pass
# (almost) no gradient: saturated (sigmoid, tanh) or dead (ReLU's zero side).
BLOCKED = 0.01


class Maxout(nn.Module):
    """Maxout (Goodfellow et al. 2013): the maximum of ``pieces`` affine maps of the input."""

    def __init__(self, in_features: int, out_features: int, pieces: int = 2) -> None:
        super().__init__()
        self.pieces = pieces
        self.linear = nn.Linear(in_features, out_features * pieces)

    def pre_activations(self, x: torch.Tensor) -> torch.Tensor:
        """(B, out, pieces): each piece's affine map."""
        return self.linear(x).unflatten(-1, (-1, self.pieces))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pre_activations(x).amax(dim=-1)


ELEMENTWISE: dict[str, Callable[[], nn.Module]] = {
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "ReLU": nn.ReLU,
    "Leaky ReLU (0.01)": lambda: nn.LeakyReLU(0.01),
    "PReLU (a = 0.25)": lambda: nn.PReLU(init=0.25),
    "ELU": nn.ELU,
}


def curves(points: int = 401) -> dict[str, tuple[list[float], list[float], list[float]]]:
    """(x, f(x), f'(x)) for each activation on [−5, 5]; Maxout as max(x, −0.5·x + 1)."""
    result = {}
    for name, make in [*ELEMENTWISE.items(), ("Maxout max(x, −x/2 + 1)", None)]:
        x = torch.linspace(-5, 5, points, dtype=torch.float64, requires_grad=True)
        y = torch.maximum(x, -0.5 * x + 1.0) if make is None else make().double()(x)
        (grad,) = torch.autograd.grad(y.sum(), x)
        result[name] = (x.detach().tolist(), y.detach().tolist(), grad.tolist())
    return result


def blocked_fraction(name: str, init: str, width: int, depth: int, batch: int, seed: int) -> float:
    """Fraction of (sample, unit) pairs in all layers whose derivative is below BLOCKED of the
    activation's maximum derivative."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, width, generator=generator)
    std = math.sqrt((1.0 if init == "Xavier" else 2.0) / width)
    blocked, total = 0, 0
    peak = 1.0  # Maxout passes its selected piece's gradient unchanged
    if not name.startswith("Maxout"):
        probe = torch.linspace(-10, 10, 20001, requires_grad=True)
        (probe_grad,) = torch.autograd.grad(ELEMENTWISE[name]()(probe).sum(), probe)
        peak = float(probe_grad.max())
    # The elementwise activations run in lab init's own network; Maxout needs its own layers.
    net = (
        None if name.startswith("Maxout") else mlp(width, depth, ELEMENTWISE[name], std, generator)
    )
    for index in range(depth):
        if net is None:
            layer = Maxout(width, width)
            with torch.no_grad():
                layer.linear.weight.normal_(0, std, generator=generator)
                layer.linear.bias.zero_()
            pre = layer.pre_activations(x).detach().requires_grad_(True)
            out = pre.amax(dim=-1)
            (grad,) = torch.autograd.grad(out.sum(), pre)
            derivative = grad.amax(dim=-1)
        else:
            pre = net[2 * index](x).detach().requires_grad_(True)
            out = net[2 * index + 1](pre)
            (derivative,) = torch.autograd.grad(out.sum(), pre)
        blocked += int((derivative.abs() < BLOCKED * peak).sum())
        total += derivative.numel()
        x = out.detach()
    return blocked / total


def run(out: Path, tiny: bool = False, seed: int = 0) -> dict[str, Any]:
    """The curves figure and the blocked-unit table."""
    width, depth, batch = (128, 6, 16) if tiny else (4096, 6, 16)
    names = [*ELEMENTWISE, "Maxout (2 pieces)"]
    fractions = {
        name: {
            init: blocked_fraction(name, init, width, depth, batch, seed)
            for init in ("Xavier", "Kaiming")
        }
        for name in names
    }
    data = curves()
    plt = pyplot()
    fig, axes = plt.subplots(2, 4, figsize=(16, 7))
    for ax, (name, (x, y, grad)) in zip(axes.flat, data.items()):
        ax.plot(x, y, label="f(x)")
        ax.plot(x, grad, "--", label="f′(x)")
        ax.axhline(0, color="grey", lw=0.5)
        ax.axvline(0, color="grey", lw=0.5)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("x")
        ax.legend(fontsize=7)
    table_ax = axes.flat[-1]
    table_ax.axis("off")
    rows = [
        [name, f"{fractions[name]['Xavier']:.1%}", f"{fractions[name]['Kaiming']:.1%}"]
        for name in names
    ]
    table = table_ax.table(
        cellText=rows, colLabels=["activation", "Xavier", "Kaiming"], loc="center"
    )
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    table_ax.set_title(
        f"units passing < {BLOCKED:.0%} of the peak gradient\n"
        f"({depth} layers × {width}, batch {batch})",
        fontsize=9,
    )
    fig.tight_layout()
    save_figure(fig, out / "activations.png")
    numbers = {
        "width": width,
        "depth": depth,
        "batch": batch,
        "blocked_below": BLOCKED,
        "blocked_fraction": fractions,
    }
    write_numbers(out, "activations", numbers)
    return numbers
