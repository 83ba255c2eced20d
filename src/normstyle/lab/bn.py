"""Batch normalisation on LeNet-5 (course notes): conv 1→6 k5, ReLU, max-pool 2, conv 6→16 k5,
ReLU, max-pool 2, linear →120, ReLU, →84, ReLU, →10, on scikit-learn's digits upsampled to
32×32; with and without BatchNorm (after each conv and hidden linear, before the ReLU), trained
with plain SGD over a range of learning rates. Also: a BN net's train-mode vs eval-mode outputs
(the "common source of bugs") and BN folded into the convs giving identical eval outputs."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from normstyle.io.figures import save_figure, subplots
from normstyle.lab.common import accuracy, digits, progress_bar, threads, train_epoch, write_numbers
from normstyle.normalization.layout import fold_batch_norm

LEARNING_RATES = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0)
TRAINS = 0.9  # a run "trains" if its final test accuracy reaches this


def lenet5(batch_norm: bool) -> nn.Sequential:
    """LeNet-5 as in the course notes, optionally with batch norm before each hidden ReLU."""

    def block(name: str, layer: nn.Module, bn: nn.Module) -> list[tuple[str, nn.Module]]:
        index = name[-1]
        return (
            [(name, layer)]
            + ([(f"bn{index}", bn)] if batch_norm else [])
            + [(f"relu{index}", nn.ReLU())]
        )

    layers = [
        *block("conv1", nn.Conv2d(1, 6, 5), nn.BatchNorm2d(6)),
        ("pool1", nn.MaxPool2d(2)),
        *block("conv2", nn.Conv2d(6, 16, 5), nn.BatchNorm2d(16)),
        ("pool2", nn.MaxPool2d(2)),
        ("flatten", nn.Flatten()),
        *block("fc3", nn.Linear(16 * 5 * 5, 120), nn.BatchNorm1d(120)),
        *block("fc4", nn.Linear(120, 84), nn.BatchNorm1d(84)),
        ("fc5", nn.Linear(84, 10)),
    ]
    return nn.Sequential(OrderedDict(layers))


def train(
    batch_norm: bool,
    lr: float,
    epochs: int,
    seed: int,
    data,
    on_epoch: Callable[[], object] | None = None,
) -> tuple[nn.Sequential, dict[str, Any]]:
    """Plain SGD, batch 64; the test accuracy after each epoch (a diverged net scores 10%).
    ``on_epoch`` is called after each epoch (the progress bar)."""
    x, y, x_test, y_test = data
    torch.manual_seed(seed)
    net = lenet5(batch_norm)
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.SGD(net.parameters(), lr=lr)
    accuracies = []
    for _ in range(epochs):
        train_epoch(net, optimizer, x, y, generator)
        accuracies.append(accuracy(net, x_test, y_test))
        if on_epoch is not None:
            on_epoch()
    return net, {
        "batch_norm": batch_norm,
        "lr": lr,
        "accuracies": accuracies,
        "final": accuracies[-1],
    }


def run(
    out: Path, tiny: bool = False, seed: int = 0, progress: bool | None = None
) -> dict[str, Any]:
    """The learning-rate sweep with and without BN, and the train/eval and folding checks.
    ``progress``: a bar with one tick per epoch (None: when stderr is a terminal)."""
    epochs = 2 if tiny else 15
    rates = (0.03, 1.0) if tiny else LEARNING_RATES
    data = digits(size=32, seed=seed)
    runs, nets = [], {}
    # One thread: LeNet-5 at batch 64 is too small to share between cores (see common.threads).
    with (
        threads(1),
        progress_bar(2 * len(rates) * epochs, "lab bn", "epoch", progress) as bar,
    ):
        for batch_norm in (False, True):
            for lr in rates:
                bar.set_postfix_str(f"{'with' if batch_norm else 'without'} BN, lr {lr:g}")
                net, result = train(batch_norm, lr, epochs, seed, data, lambda: bar.update(1))
                runs.append(result)
                nets[(batch_norm, lr)] = net
    highest = {
        ("with BN" if bn else "without BN"): max(
            (r["lr"] for r in runs if r["batch_norm"] == bn and r["final"] >= TRAINS), default=None
        )
        for bn in (False, True)
    }
    # Train-mode vs eval-mode outputs of the same trained BN net on the same test batch.
    bn_net = nets[(True, 0.1 if 0.1 in rates else rates[0])]
    x_test = data[2][:64]
    with torch.no_grad():
        bn_net.eval()
        eval_out = bn_net(x_test)
        folded = fold_batch_norm(bn_net)
        folded_out = folded(x_test)
        bn_net.train()
        train_out = bn_net(x_test)
        bn_net.eval()
    numbers = {
        "epochs": epochs,
        "runs": runs,
        "highest_lr_that_trains": highest,
        "trains_if_accuracy_at_least": TRAINS,
        "train_vs_eval_relative_difference": float((train_out - eval_out).norm() / eval_out.norm()),
        "train_vs_eval_prediction_agreement": float(
            (train_out.argmax(1) == eval_out.argmax(1)).float().mean()
        ),
        "folded_vs_eval_max_abs_difference": float((folded_out - eval_out).abs().max()),
        "folded_layers": [
            name for name, m in folded.named_children() if isinstance(m, nn.Identity)
        ],
    }
    fig, axes = subplots(1, 3, figsize=(16, 4))
    for ax, batch_norm in zip(axes[:2], (False, True)):
        for result in (r for r in runs if r["batch_norm"] == batch_norm):
            ax.plot(
                range(1, epochs + 1), result["accuracies"], "o-", ms=3, label=f"lr {result['lr']:g}"
            )
        ax.set(
            title=f"LeNet-5 {'with' if batch_norm else 'without'} batch norm (plain SGD)",
            xlabel="epoch",
            ylabel="test accuracy",
            ylim=(0, 1),
        )
        ax.legend(fontsize=7)
    for batch_norm, marker in ((False, "o"), (True, "s")):
        finals = [(r["lr"], r["final"]) for r in runs if r["batch_norm"] == batch_norm]
        axes[2].semilogx(
            *zip(*finals), marker + "-", label="with BN" if batch_norm else "without BN"
        )
    axes[2].axhline(TRAINS, color="grey", ls="--", lw=0.8)
    axes[2].set(
        title="final test accuracy vs learning rate",
        xlabel="learning rate (log)",
        ylabel="test accuracy",
        ylim=(0, 1),
    )
    axes[2].legend()
    fig.tight_layout()
    save_figure(fig, out / "bn.png")
    write_numbers(out, "bn", numbers)
    return numbers
