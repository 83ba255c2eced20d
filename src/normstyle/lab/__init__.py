"""Lecture experiments (CS231n lecture 7 and course notes on weight initialisation and batch
norm) reproduced as figures with numbers. Each ``run(out, tiny, seed)`` writes PNGs and a JSON of
its numbers into ``out`` and returns those numbers.

May import: ``normstyle.errors``, ``io``, ``nets``, ``normalization`` and ``statistics``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from normstyle.lab import activations, bn, depth, init, norms

# The files each experiment writes (checked before it runs, moved into place together after).
OUTPUTS: dict[str, tuple[str, ...]] = {
    "init": ("init_layers.png", "init_histograms.png", "init.json"),
    "depth": ("depth.png", "depth.json"),
    "bn": ("bn.png", "bn.json"),
    "norms": ("norms.png", "norms.json"),
    "activations": ("activations.png", "activations.json"),
}

EXPERIMENTS: dict[str, Callable[[Path, bool, int], dict[str, Any]]] = {
    "init": init.run,
    "depth": depth.run,
    "bn": bn.run,
    "norms": norms.run,
    "activations": activations.run,
}
