"""Recompute the shipped per-filter means of vgg19-caffe on the shared ImageNet samples.

    .venv/bin/python scripts/regenerate_means.py [--images ../shared/data/imagenet-samples]

Writes src/normstyle/data/vgg19-caffe-means.json (keyed by the weights' sha256), which
``vgg19-caffe-normalized`` loads. Takes ~3 minutes on a 2-core CPU.
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from normstyle.io.files import atomic_write
from normstyle.io.folders import ImageFolder
from normstyle.normalization.calibrate import calibrate
from normstyle.registry import NORMALIZED_MEANS_FILE, get_weights

DEFAULT_IMAGES = Path(os.environ.get("NORMSTYLE_DATA", "../shared/data")) / "imagenet-samples"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", default=str(DEFAULT_IMAGES))
    parser.add_argument("--short-side", type=int, default=256, help="short side in px")
    parser.add_argument("-o", "--output", default=str(NORMALIZED_MEANS_FILE))
    args = parser.parse_args()
    means, skipped = calibrate(
        get_weights("vgg19-caffe"), ImageFolder(args.images, args.short_side)
    )
    means.meta["calibration_set"]["folder"] = "shared/data/imagenet-samples"
    text = json.dumps(means.to_json(), indent=1) + "\n"
    atomic_write(Path(args.output), lambda handle: handle.write(text.encode()))
    print(f"wrote {args.output}: {means.images} images, {len(skipped)} skipped")


if __name__ == "__main__":
    main()
