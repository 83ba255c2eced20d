"""Helpers shared by the lab experiments."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from normstyle.images import atomic_write


def write_numbers(out: Path, name: str, numbers: dict[str, Any]) -> Path:
    """``out/NAME.json`` with the experiment's numbers."""
    out.mkdir(parents=True, exist_ok=True)
    text = json.dumps(numbers, indent=1, default=float)
    return atomic_write(out / f"{name}.json", lambda handle: handle.write(text.encode() + b"\n"))


def digits(
    size: int | None = None, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """scikit-learn's bundled 8×8 digits (1,797 images), standardised, split 80/20 at random.

    With ``size``, images are (N, 1, size, size), upsampled bilinearly; else flat (N, 64).
    """
    from sklearn.datasets import load_digits

    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32) / 16.0
    y = torch.tensor(data.target, dtype=torch.long)
    order = torch.tensor(np.random.default_rng(seed).permutation(len(y)))
    x, y = x[order], y[order]
    if size is None:
        x = x.reshape(len(y), 64)
    else:
        x = torch.nn.functional.interpolate(
            x[:, None], size=(size, size), mode="bilinear", align_corners=False
        )
    split = int(0.8 * len(y))
    mean, std = x[:split].mean(), x[:split].std()
    x = (x - mean) / std
    return x[:split], y[:split], x[split:], y[split:]


def train_epoch(
    net: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    generator: torch.Generator,
    batch_size: int = 64,
) -> float:
    """One epoch of cross-entropy minibatch training in a random order; the mean loss."""
    net.train()
    order = torch.randperm(len(y), generator=generator)
    total = 0.0
    for start in range(0, len(y), batch_size):
        batch = order[start : start + batch_size]
        loss = torch.nn.functional.cross_entropy(net(x[batch]), y[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total += loss.item() * len(batch)
    return total / len(y)


def accuracy(net: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Eval-mode accuracy; a net whose outputs are not finite scores chance (10%)."""
    net.eval()
    with torch.no_grad():
        logits = net(x)
    if not torch.isfinite(logits).all():
        return 0.1
    return float((logits.argmax(1) == y).float().mean())
