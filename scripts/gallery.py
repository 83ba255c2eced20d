"""The README's gallery of artist controls (Gatys et al. 2017), like the paper's figures 2, 3 and
5: for each control the inputs and the results side by side, with captions.

    make gallery            # ~8 stylisations at 256 px with the defaults (~6 minutes here)

Writes docs/gallery/spatial.png (§4: a style for the sky and one for the ground, then swapped),
docs/gallery/colour.png (§5: no control, luminance-only transfer, colour histogram matching and
the luminance swap) and docs/gallery/scale.png (§6: the fine layers of one style with the coarse
layers of another, both ways round). Inputs come from ../shared/data (``NORMSTYLE_DATA``); the
sky mask is computed from the photo here (blue pixels connected to the top edge, smoothed).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections import deque
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from normstyle.io.decode import read_image
from normstyle.style.options import StyleOptions
from normstyle.style.transfer import run

DATA = Path(os.environ.get("NORMSTYLE_DATA", Path(__file__).resolve().parents[2] / "shared/data"))
OUT = Path("docs/gallery")
TILE = 200  # px: the long side of each picture in a figure
CAPTION = 34  # px of caption under each picture
FINE = {"relu1_1": 0.2, "relu2_1": 0.2}
COARSE = {"relu3_1": 0.2, "relu4_1": 0.2, "relu5_1": 0.2}


def sky_mask(photo: Path) -> Image.Image:
    """White where the photo shows sky: blue pixels in its upper part connected to the top
    edge, closed and blurred into a soft edge."""
    rgb = np.asarray(read_image(photo), dtype=np.float32) / 255
    red, blue = rgb[..., 0], rgb[..., 2]
    height, width = red.shape
    rows = np.arange(height)[:, None]
    candidate = (blue > red + 0.12) & (blue > 0.45) & (rows < 0.62 * height)
    sky = np.zeros_like(candidate)
    queue = deque((0, x) for x in range(width) if candidate[0, x])
    for point in queue:
        sky[point] = True
    while queue:
        y, x = queue.popleft()
        for ny, nx in ((y + 1, x), (y - 1, x), (y, x + 1), (y, x - 1)):
            if 0 <= ny < height and 0 <= nx < width and candidate[ny, nx] and not sky[ny, nx]:
                sky[ny, nx] = True
                queue.append((ny, nx))
    mask = Image.fromarray((sky * 255).astype(np.uint8))
    for step in (ImageFilter.MaxFilter(5), ImageFilter.MinFilter(9), ImageFilter.GaussianBlur(4)):
        mask = mask.filter(step)
    return mask


def stylised(content: object, styles: list[object], size: int, **options: object) -> Image.Image:
    """Our defaults at ``size`` px, seed 0, plus ``options``."""
    print(f"  stylising with {options or 'the defaults'}", flush=True)
    result = run(content, styles, StyleOptions(long_side=size, seed=0, progress=False, **options))
    return result.image


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the small bitmap font
        return ImageFont.load_default()


def figure(title: str, panels: list[tuple[Image.Image, str]], path: Path) -> None:
    """The panels in a row, each fitted into TILE × TILE and captioned, under a title."""
    gap, head = 6, 26
    title_font, caption_font = _font(15), _font(12)
    width = len(panels) * TILE + (len(panels) - 1) * gap
    canvas = Image.new("RGB", (width, head + TILE + CAPTION), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((2, 4), title, fill="black", font=title_font)
    for column, (image, caption) in enumerate(panels):
        picture = image.convert("RGB")
        picture.thumbnail((TILE, TILE), Image.Resampling.LANCZOS)
        left = column * (TILE + gap)
        canvas.paste(picture, (left + (TILE - picture.width) // 2, head + TILE - picture.height))
        for line, text in enumerate(caption.split("\n")):
            draw.text(
                (left + 2, head + TILE + 3 + 15 * line), text, fill=(50, 50, 50), font=caption_font
            )
    path.parent.mkdir(parents=True, exist_ok=True)
    # A 256-colour palette (dithered): a third of the bytes of full colour, no visible loss at
    # this size, so that the committed gallery stays a few hundred KB.
    palette = canvas.quantize(256, Image.Quantize.MEDIANCUT, dither=Image.Dither.FLOYDSTEINBERG)
    palette.save(path, optimize=True)
    print(f"wrote {path} ({path.stat().st_size // 1024} KB)", flush=True)


def with_inset(photo: Image.Image, mask: Image.Image) -> Image.Image:
    """The photo with its mask in a corner, as in the paper's Fig. 1(a)."""
    picture = photo.convert("RGB").copy()
    inset = mask.convert("RGB").resize((picture.width // 3, picture.height // 3))
    picture.paste(Image.new("RGB", (inset.width + 4, inset.height + 4), "white"), (0, 0))
    picture.paste(inset, (2, 2))
    return picture


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256, help="output long side [256]")
    args = parser.parse_args()
    logging.getLogger("normstyle").setLevel(logging.ERROR)  # the optimiser's guard notes
    if not DATA.is_dir():
        sys.exit(f"gallery: no shared data at {DATA} (set NORMSTYLE_DATA)")
    size = args.size
    tubingen, golden_gate = DATA / "photos/tubingen.jpg", DATA / "photos/golden_gate.jpg"
    starry, scream = DATA / "art/starry_night.jpg", DATA / "art/the_scream.jpg"

    print("spatial control (§4)")
    sky = sky_mask(tubingen)
    ground = Image.eval(sky, lambda value: 255 - value)
    photo = read_image(tubingen)
    figure(
        "Spatial control (Gatys et al. 2017, sec. 4): --masks, one per style",
        [
            (with_inset(photo, sky), "content, sky mask\n(computed from the photo)"),
            (read_image(starry), "style 1: Starry Night"),
            (read_image(scream), "style 2: The Scream"),
            (stylised(tubingen, [starry, scream], size, masks=(sky, ground)), "sky: 1, ground: 2"),
            (
                stylised(tubingen, [starry, scream], size, masks=(ground, sky)),
                "masks swapped:\nsky: 2, ground: 1",
            ),
        ],
        OUT / "spatial.png",
    )

    print("colour control (§5)")
    figure(
        "Colour control (Gatys et al. 2017, sec. 5): --preserve-colors",
        [
            (read_image(golden_gate), "content"),
            (read_image(starry), "style"),
            (stylised(golden_gate, [starry], size), "none: the style's\ncolours"),
            (
                stylised(golden_gate, [starry], size, preserve_colors="luminance"),
                "luminance (5.1):\nluminance-only transfer",
            ),
            (
                stylised(golden_gate, [starry], size, preserve_colors="histogram"),
                "histogram (5.2): style\nrecoloured first",
            ),
            (
                stylised(golden_gate, [starry], size, preserve_colors="luminance-swap"),
                "luminance-swap: colour\nrun, content's I/Q after",
            ),
        ],
        OUT / "colour.png",
    )

    print("scale control (§6)")
    figure(
        "Scale control (Gatys et al. 2017, sec. 6): --style-layers, one set per style",
        [
            (read_image(tubingen), "content"),
            (read_image(starry), "style 1: Starry Night"),
            (read_image(scream), "style 2: The Scream"),
            (
                stylised(tubingen, [starry, scream], size, style_layers=[FINE, COARSE]),
                "fine (relu1_1, 2_1): 1\ncoarse (relu3_1-5_1): 2",
            ),
            (
                stylised(tubingen, [starry, scream], size, style_layers=[COARSE, FINE]),
                "fine: 2\ncoarse: 1",
            ),
        ],
        OUT / "scale.png",
    )


if __name__ == "__main__":
    main()
