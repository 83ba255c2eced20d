"""A neutral yardstick for how stylised an image is and how much content it keeps, the same for
every tool: the original Caffe VGG-19, unnormalised, max pooling (the network as trained).

- style left: Σ over relu3_1…relu5_1 of the paper's E_l between the image and the style image
  (Grams divided by their positions, so images of different sizes compare), as a fraction of the
  same sum for the photo itself — 1.0 is "not stylised at all", 0 a perfect deep-style match;
- content distance: the mean squared relu4_2 difference between the image and the photo.

    .venv/bin/python benchmarks/yardstick.py PHOTO STYLE IMAGE [IMAGE ...]
"""

from __future__ import annotations

import argparse
import sys
from functools import cache
from pathlib import Path

import torch

from normstyle.io.decode import decoded, image_size
from normstyle.io.resize import fit
from normstyle.io.tensors import as_tensor
from normstyle.nets.vgg import VGG
from normstyle.registry import get_weights

DEEP = ("relu3_1", "relu4_1", "relu5_1")
ALL_STYLE = ("relu1_1", "relu2_1", *DEEP)
CONTENT = "relu4_2"


@cache
def network() -> VGG:
    """The unnormalised Caffe VGG-19 with max pooling (built once)."""
    return get_weights("vgg19-caffe").build(pooling="max")


def features(image: object, long_side: int) -> dict[str, torch.Tensor]:
    """relu features (float64) of an image resized to ``long_side``."""
    prep = get_weights("vgg19-caffe").preprocessing
    x = prep.from_rgb(as_tensor(fit(decoded(image), long_side=long_side)))
    with torch.inference_mode():
        return {k: v.double() for k, v in network()(x, [*ALL_STYLE, CONTENT]).items()}


def gram(feature: torch.Tensor) -> torch.Tensor:
    """G/M: the Gram matrix per position."""
    flat = feature[0].flatten(1)
    return flat @ flat.T / flat.shape[1]


def style_distances(image_features, style_features) -> dict[str, float]:
    """The paper's E_l = 1/(4N²)·Σ(G/M − A/M')² per style layer."""
    out = {}
    for name in ALL_STYLE:
        n = image_features[name].shape[1]
        difference = gram(image_features[name]) - gram(style_features[name])
        out[name] = float(difference.square().sum() / (4 * n * n))
    return out


def measure(photo: object, style: object, image: object) -> dict[str, float]:
    """Style left (deep layers, fraction of the photo's own) and content distance of ``image``."""
    size = max(image_size(decoded(image)))
    mine = features(image, size)
    reference = features(photo, size)
    target = features(style, size)
    ours = style_distances(mine, target)
    photos = style_distances(reference, target)
    deep = sum(ours[k] for k in DEEP) / sum(photos[k] for k in DEEP)
    content = float((mine[CONTENT] - reference[CONTENT]).square().mean())
    return {
        "style_left_deep": deep,
        "style_left_shallow": sum(ours[k] for k in ALL_STYLE[:2])
        / sum(photos[k] for k in ALL_STYLE[:2]),
        "content_distance": content,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("photo")
    parser.add_argument("style")
    parser.add_argument("images", nargs="+")
    args = parser.parse_args()
    print(f"{'image':<48}{'deep style left':>16}{'shallow left':>14}{'content dist':>14}")
    for image in args.images:
        m = measure(args.photo, args.style, image)
        print(
            f"{Path(image).name:<48}{m['style_left_deep']:>16.3f}"
            f"{m['style_left_shallow']:>14.3f}{m['content_distance']:>14.4g}"
        )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
