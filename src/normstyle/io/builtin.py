"""Images that need no download: a photo shipped with matplotlib and a style image we generate.

Use them anywhere an image path is accepted as ``builtin:NAME``.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from pathlib import Path

import numpy as np
from PIL import Image

from normstyle.errors import InputError, did_you_mean

PREFIX = "builtin:"


def _grace_hopper() -> Image.Image:
    # matplotlib ships this portrait (public domain, US Navy) in mpl-data/sample_data.
    import matplotlib

    path = Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg"
    with Image.open(path) as image:
        return image.convert("RGB")


def _swirls(size: int = 512, seed: int = 7) -> Image.Image:
    """A van-Gogh-like field of brush strokes: line-integral convolution of noise along a flow made
    of a few vortices and a wavy background current, coloured with a night-sky palette."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float64) / size
    vx = 0.6 + 0.25 * np.sin(6.0 * ys + 2.0 * np.sin(3.0 * xs))
    vy = 0.25 * np.cos(5.0 * xs + 1.5)
    glow = np.zeros_like(xs)
    for cx, cy, radius, spin in [
        (0.3, 0.3, 0.16, 1.0),
        (0.72, 0.2, 0.1, -1.0),
        (0.62, 0.62, 0.2, 1.0),
        (0.18, 0.78, 0.12, -1.0),
    ]:
        dx, dy = xs - cx, ys - cy
        weight = np.exp(-(dx**2 + dy**2) / radius**2)
        vx += spin * -dy / radius * 3.0 * weight
        vy += spin * dx / radius * 3.0 * weight
        glow += np.exp(-(dx**2 + dy**2) / (0.35 * radius) ** 2)
    norm = np.hypot(vx, vy) + 1e-9
    vx, vy = vx / norm, vy / norm
    # Line integral convolution: average coarse noise along the flow, forward and backward.
    noise = rng.random((size // 2, size // 2))
    noise = np.kron(noise, np.ones((2, 2)))
    strokes = np.zeros_like(xs)
    for direction in (1.0, -1.0):
        px, py = xs * size, ys * size
        for _ in range(12):
            ix = np.clip(px.astype(int), 0, size - 1)
            iy = np.clip(py.astype(int), 0, size - 1)
            strokes += noise[iy, ix]
            px = px + direction * 1.5 * vx[iy, ix]
            py = py + direction * 1.5 * vy[iy, ix]
    strokes = (strokes - strokes.mean()) / (strokes.std() + 1e-9)
    tone = np.clip(0.45 * ys + 0.9 * glow + 0.12 * strokes, 0.0, 1.0)
    palette = np.array(
        [[16, 28, 72], [32, 70, 150], [70, 130, 200], [230, 210, 90], [250, 245, 200]],
        dtype=np.float64,
    )
    position = tone * (len(palette) - 1)
    low = np.floor(position).astype(int).clip(0, len(palette) - 2)
    frac = (position - low)[..., None]
    rgb = palette[low] * (1 - frac) + palette[low + 1] * frac
    rgb *= (1.0 + 0.18 * strokes)[..., None]
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), mode="RGB")


BUILTIN_IMAGES: dict[str, Callable[[], Image.Image]] = {
    "grace_hopper": _grace_hopper,
    "swirls": _swirls,
}


@cache
def _cached(name: str) -> Image.Image:
    return BUILTIN_IMAGES[name]()


def is_builtin(source: object) -> bool:
    """Whether ``source`` names a built-in image (``builtin:NAME``)."""
    return isinstance(source, str) and source.startswith(PREFIX)


def builtin_image(source: str) -> Image.Image:
    """The built-in image ``builtin:NAME`` (a copy: callers may modify it)."""
    name = source.removeprefix(PREFIX)
    if name not in BUILTIN_IMAGES:
        raise InputError(
            f"unknown built-in image '{source}'{did_you_mean(name, BUILTIN_IMAGES)};"
            f" choose from {', '.join(PREFIX + n for n in BUILTIN_IMAGES)}"
        )
    return _cached(name).copy()
