"""Which elements of an N×C×H×W tensor share statistics under BatchNorm2d, LayerNorm,
InstanceNorm2d and GroupNorm — found from torch's own modules: change one input element and
see which outputs change (they are exactly the elements normalised with the same mean and
variance). Drawn as the familiar cubes of Wu & He (2018), Fig. 2."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from normstyle.io.figures import new_figure, save_figure
from normstyle.lab.common import write_numbers


def modules(channels: int, height: int, width: int, groups: int) -> dict[str, nn.Module]:
    """The four normalisations, in training mode, without affine parameters."""
    return {
        "BatchNorm2d": nn.BatchNorm2d(channels, affine=False).train(),
        "LayerNorm": nn.LayerNorm([channels, height, width], elementwise_affine=False),
        "InstanceNorm2d": nn.InstanceNorm2d(channels, affine=False),
        f"GroupNorm ({groups} groups)": nn.GroupNorm(groups, channels, affine=False),
    }


def sharing_mask(module: nn.Module, shape: tuple[int, int, int, int], seed: int) -> torch.Tensor:
    """Boolean mask of the outputs that change when input element (0, 0, 0, 0) changes."""
    x = torch.randn(shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    module = module.double()
    with torch.no_grad():
        before = module(x)
        x[0, 0, 0, 0] += 1.0
        after = module(x)
    return (after - before).abs() > 1e-12


def run(out: Path, tiny: bool = False, seed: int = 0) -> dict[str, Any]:
    """Masks for a 4×6×3×3 tensor, the cube figure and the sets as numbers."""
    shape = (4, 6, 3, 3)
    groups = 2
    masks = {name: sharing_mask(m, shape, seed) for name, m in modules(*shape[1:], groups).items()}
    numbers = {
        "shape": list(shape),
        "changed_by_element_0000": {
            name: {
                "count": int(mask.sum()),
                "samples": sorted({int(i) for i in mask.nonzero()[:, 0]}),
                "channels": sorted({int(i) for i in mask.nonzero()[:, 1]}),
                "positions": int(mask[0, 0].sum()) if mask[0, 0].any() else 0,
            }
            for name, mask in masks.items()
        },
    }
    fig = new_figure(figsize=(16, 4.2))
    n, c, h, w = shape
    for index, (name, mask) in enumerate(masks.items(), start=1):
        ax = fig.add_subplot(1, len(masks), index, projection="3d")
        cube = mask.reshape(n, c, h * w).permute(0, 2, 1).numpy()  # axes: N, H·W, C
        colours = [
            [["#3b6fd6" if cube[i, j, k] else "#ffffff00" for k in range(c)] for j in range(h * w)]
            for i in range(n)
        ]
        filled = np.ones(cube.shape, dtype=bool)
        ax.voxels(
            filled, facecolors=np.array(colours, dtype=object), edgecolor=(0.6, 0.6, 0.6, 0.4)
        )
        ax.set_xlabel("N (sample)")
        ax.set_ylabel("H, W (position)")
        ax.set_zlabel("C (channel)")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_zticks([])
        ax.set_title(f"{name}\n{int(mask.sum())} elements share a mean and variance", fontsize=9)
        ax.view_init(elev=20, azim=-55)
    fig.suptitle(
        "Blue: the outputs that change when one input element changes (torch modules, "
        f"N×C×H×W = {'×'.join(map(str, shape))})",
        fontsize=10,
    )
    save_figure(fig, out / "norms.png")
    write_numbers(out, "norms", numbers)
    return numbers
