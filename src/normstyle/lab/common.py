"""Helpers shared by the lab experiments."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from normstyle.io.files import atomic_write


@contextmanager
def threads(count: int) -> Iterator[None]:
    """torch's intra-op thread count set to ``count`` inside the block, restored after it.

    The lab's small nets gain little from a second thread and lose much when another process
    holds a core (OpenMP waits for the busy core at every op). Measured on a 2-core EPYC with
    AVX2 kernels, per training step at batch 64: LeNet-5 10 ms on 1 thread, 7 ms on 2 idle
    threads, 22–30 ms on 2 threads beside a busy process; the 30-layer width-64 MLP 2 ms on 1 or
    2 idle threads, 14 ms on 2 beside a busy process. One thread also makes their numbers
    independent of the machine's core count (they depend on it through reduction order)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def progress_bar(total: int, description: str, unit: str, show: bool | None = None) -> tqdm:
    """A progress bar on stderr; ``show=None``: only when stderr is a terminal (so logs and
    tests stay clean), True/False: always/never. Removed from the screen when closed."""
    return tqdm(
        total=total,
        desc=description,
        unit=unit,
        disable=None if show is None else not show,
        leave=False,
        dynamic_ncols=True,
    )


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
