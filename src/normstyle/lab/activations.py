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

from normstyle.io.figures import save_figure, subplots
from normstyle.lab.common import progress_bar, threads, write_numbers
from normstyle.lab.init import mlp

# A unit "blocks" the gradient for a sample when the gradient of its output with respect to the
# layer's input, ‖∂y_j/∂x‖, is below this fraction of the largest it can be: saturated (sigmoid,
# tanh) or dead (ReLU's zero side). For an elementwise f that is |f′(pre_j)| < BLOCKED · max f′.
# 0.1%, not 1%: Leaky ReLU's slope 0.01 is exactly 1% of its peak, and whether it counted as
# blocked depended on float rounding; at 0.1% it is 10× clear of the threshold.
BLOCKED = 0.001


class Maxout(nn.Module):
    """Maxout (Goodfellow et al. 2013): the maximum of ``pieces`` affine maps of the input."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        pieces: int = 2,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__()
        self.pieces = pieces
        self.linear = nn.Linear(in_features, out_features * pieces, device=device)

    def pre_activations(self, x: torch.Tensor) -> torch.Tensor:
        """(B, out, pieces): each piece's affine map."""
        return self.linear(x).unflatten(-1, (-1, self.pieces))

    @staticmethod
    def select(pre: torch.Tensor) -> torch.Tensor:
        """(B, out): the largest piece of each unit."""
        return pre.amax(dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.select(self.pre_activations(x))


ELEMENTWISE: dict[str, Callable[[], nn.Module]] = {
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "ReLU": nn.ReLU,
    "Leaky ReLU (0.01)": lambda: nn.LeakyReLU(0.01),
    "PReLU (a = 0.25)": lambda: nn.PReLU(init=0.25),
    "ELU": nn.ELU,
}
MAXOUT = "Maxout (2 pieces)"


def curves(points: int = 401) -> dict[str, tuple[list[float], list[float], list[float]]]:
    """(x, f(x), f'(x)) for each activation on [−5, 5]; Maxout as max(x, −0.5·x + 1)."""
    result = {}
    for name, make in [*ELEMENTWISE.items(), ("Maxout max(x, −x/2 + 1)", None)]:
        x = torch.linspace(-5, 5, points, dtype=torch.float64, requires_grad=True)
        y = torch.maximum(x, -0.5 * x + 1.0) if make is None else make().double()(x)
        (grad,) = torch.autograd.grad(y.sum(), x)
        result[name] = (x.detach().tolist(), y.detach().tolist(), grad.tolist())
    return result


def peak_derivative(make: Callable[[], nn.Module]) -> float:
    """The largest derivative of an elementwise activation (autograd, on [−10, 10])."""
    probe = torch.linspace(-10, 10, 20001, requires_grad=True)
    (probe_grad,) = torch.autograd.grad(make()(probe).sum(), probe)
    return float(probe_grad.max())


def maxout_gradient_ratio(layer: Maxout, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, out) ‖∂y_j/∂x‖ / max_k ‖w_jk‖ for each sample and unit of a Maxout layer, and its
    output. A unit passes its gradient through the piece(s) it selected (autograd through
    ``Maxout.select``), so ∂y_j/∂x = Σ_k g_k·w_jk; its norm comes from the pieces' Gram matrix
    instead of a (B, out, in) Jacobian. Near 1 when the pieces' weights have similar norms; small
    when the selected piece's weights are small."""
    with torch.no_grad():
        pre = layer.pre_activations(x)
    pre.requires_grad_(True)
    out = layer.select(pre)
    (selected,) = torch.autograd.grad(out.sum(), pre)  # (B, out, pieces); units are independent
    weights = layer.linear.weight.detach().unflatten(0, (-1, layer.pieces))  # (out, pieces, in)
    gram = weights @ weights.transpose(1, 2)  # (out, pieces, pieces): ⟨w_jk, w_jl⟩
    squared = torch.einsum("bjk,jkl,bjl->bj", selected, gram, selected)
    largest = gram.diagonal(dim1=1, dim2=2).amax(dim=-1)
    return (squared.clamp(min=0) / largest).sqrt(), out.detach()


def gradient_ratios(
    names: list[str],
    init: str,
    width: int,
    depth: int,
    batch: int,
    seed: int,
    on_done: Callable[[], object] | None = None,
) -> dict[str, torch.Tensor]:
    """Per activation, (depth, batch, width): each unit's ‖∂y_j/∂x‖ over the largest it can be,
    in a ``depth`` × ``width`` net (weights N(0, 1/n) "Xavier" or N(0, 2/n) "Kaiming", no
    biases, unit-Gaussian input). The elementwise activations share one set of weights (the
    same draws as lab init's ``mlp``), drawn once; Maxout draws its own, twice as many.
    ``on_done`` is called after each activation (the progress bar)."""
    std = math.sqrt((1.0 if init == "Xavier" else 2.0) / width)
    result = {}
    elementwise = [name for name in names if name != MAXOUT]
    if elementwise:
        generator = torch.Generator().manual_seed(seed)
        inputs = torch.randn(batch, width, generator=generator)
        linears = list(mlp(width, depth, nn.Identity, std, generator))[0::2]
        for name in elementwise:
            peak, x, ratios = peak_derivative(ELEMENTWISE[name]), inputs, []
            for linear in linears:
                with torch.no_grad():
                    pre = linear(x)
                pre.requires_grad_(True)
                out = ELEMENTWISE[name]()(pre)
                (derivative,) = torch.autograd.grad(out.sum(), pre)
                ratios.append(derivative.abs() / peak)
                x = out.detach()
            result[name] = torch.stack(ratios)
            if on_done is not None:
                on_done()
    if MAXOUT in names:
        generator = torch.Generator().manual_seed(seed)
        x, ratios = torch.randn(batch, width, generator=generator), []
        for _ in range(depth):
            layer = nn.utils.skip_init(Maxout, width, width)  # the weights are drawn below
            with torch.no_grad():
                layer.linear.weight.normal_(0, std, generator=generator)
                layer.linear.bias.zero_()
            ratio, x = maxout_gradient_ratio(layer, x)
            ratios.append(ratio)
        result[MAXOUT] = torch.stack(ratios)
        if on_done is not None:
            on_done()
    return result


def blocked_fraction(name: str, init: str, width: int, depth: int, batch: int, seed: int) -> float:
    """Fraction of (sample, unit) pairs in all layers that block the gradient (see BLOCKED)."""
    ratios = gradient_ratios([name], init, width, depth, batch, seed)[name]
    return float((ratios < BLOCKED).double().mean())


def run(
    out: Path, tiny: bool = False, seed: int = 0, progress: bool | None = None
) -> dict[str, Any]:
    """The curves figure and the blocked-unit table. ``progress``: a bar with one tick per
    activation and initialisation (None: when stderr is a terminal)."""
    width, depth, batch = (128, 6, 16) if tiny else (4096, 6, 16)
    names, inits = [*ELEMENTWISE, MAXOUT], ("Xavier", "Kaiming")
    fractions: dict[str, dict[str, float]] = {name: {} for name in names}
    # One thread: as fast on an idle machine (the time goes to drawing weights, one thread
    # anyway), 10–25% faster when another process holds the other core.
    with (
        threads(1),
        progress_bar(len(names) * len(inits), "lab activations", "net", progress) as bar,
    ):
        for init in inits:
            ratios = gradient_ratios(names, init, width, depth, batch, seed, lambda: bar.update(1))
            for name in names:
                fractions[name][init] = float((ratios[name] < BLOCKED).double().mean())
    data = curves()
    fig, axes = subplots(2, 4, figsize=(16, 7))
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
        [name, f"{fractions[name]['Xavier']:.2%}", f"{fractions[name]['Kaiming']:.2%}"]
        for name in names
    ]
    table = table_ax.table(
        cellText=rows, colLabels=["activation", "Xavier", "Kaiming"], loc="center"
    )
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    table_ax.set_title(
        f"units passing < {BLOCKED:.1%} of their largest gradient\n"
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
