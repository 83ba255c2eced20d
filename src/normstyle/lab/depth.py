"""Depth and initialisation (He et al. 2015, §2.2): plain ReLU nets of 22 and 30 layers trained
on scikit-learn's digits with Var[w] = 1/n (Xavier-like) and 2/n (Kaiming). The claim: with 2/n
the deep net converges; with 1/n the signal shrinks by ½ per layer and the 30-layer net stalls or
learns much more slowly. He et al. used conv nets on ImageNet; this is the small-scale analogue
(fully connected, width 64, SGD with momentum)."""

from __future__ import annotations

import itertools
import math
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from normstyle.io.figures import save_figure, subplots
from normstyle.lab.common import accuracy, digits, progress_bar, threads, train_epoch, write_numbers


def plain_relu_net(
    depth: int, width: int, variance_gain: float, generator: torch.Generator
) -> nn.Sequential:
    """``depth`` weight layers: (depth − 1) × (Linear + ReLU), then a Linear to 10 classes;
    weights N(0, gain/n_in), biases 0."""
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    sizes = [64] + [width] * (depth - 1) + [10]
    for index, (n_in, n_out) in enumerate(itertools.pairwise(sizes), start=1):
        linear = nn.Linear(n_in, n_out)
        with torch.no_grad():
            linear.weight.normal_(0.0, math.sqrt(variance_gain / n_in), generator=generator)
            linear.bias.zero_()
        layers[f"fc{index}"] = linear
        if index < depth:
            layers[f"relu{index}"] = nn.ReLU()
    return nn.Sequential(layers)


def train(
    depth: int,
    gain: float,
    epochs: int,
    seed: int,
    width: int = 64,
    lr: float = 0.01,
    on_epoch: Callable[[], object] | None = None,
) -> dict[str, Any]:
    """Train one net; the training loss after each epoch and the final test accuracy.
    ``on_epoch`` is called after each epoch (the progress bar)."""
    x, y, x_test, y_test = digits(seed=seed)
    generator = torch.Generator().manual_seed(seed)
    net = plain_relu_net(depth, width, gain, generator)
    optimizer = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9)
    losses = []
    for _ in range(epochs):
        losses.append(train_epoch(net, optimizer, x, y, generator))
        if on_epoch is not None:
            on_epoch()
    return {
        "depth": depth,
        "variance": f"{gain:g}/n",
        "losses": losses,
        "test_accuracy": accuracy(net, x_test, y_test),
    }


def run(
    out: Path, tiny: bool = False, seed: int = 0, progress: bool | None = None
) -> dict[str, Any]:
    """Train the four nets (``tiny``: fewer epochs) and plot their loss curves. ``progress``: a
    bar with one tick per epoch (None: when stderr is a terminal)."""
    epochs = 4 if tiny else 30
    nets = [(depth, gain) for depth in (22, 30) for gain in (1.0, 2.0)]
    runs = []
    # One thread: width-64 layers are too small to share between cores (see common.threads).
    with threads(1), progress_bar(len(nets) * epochs, "lab depth", "epoch", progress) as bar:
        for depth, gain in nets:
            bar.set_postfix_str(f"{depth} layers, Var[w] = {gain:g}/n")
            runs.append(train(depth, gain, epochs, seed, on_epoch=lambda: bar.update(1)))
    fig, axes = subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, depth in zip(axes, (22, 30)):
        for result in (r for r in runs if r["depth"] == depth):
            ax.plot(
                range(1, epochs + 1),
                result["losses"],
                "o-",
                ms=3,
                label=f"Var[w] = {result['variance']} (test acc. {result['test_accuracy']:.0%})",
            )
        ax.set(
            title=f"{depth}-layer plain ReLU net on digits",
            xlabel="epoch",
            ylabel="training loss (cross-entropy)",
        )
        ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, out / "depth.png")
    numbers = {"epochs": epochs, "runs": runs}
    write_numbers(out, "depth", numbers)
    return numbers
