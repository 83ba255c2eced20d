"""How well per-filter means calibrated on some images hold on images never used for calibration.

    make generalization        # ~10 minutes on a 2-core CPU

The 500 shared ImageNet samples are split at random (seed 0) into a calibration pool of 250 and
250 held-out images. Each image's per-filter activation sums are measured once on the original
vgg19-caffe (short side 256). Because the cascade normalisation is exact (normalised features =
original/μ_cal, tested), the held-out mean of the normalised network is μ_held/μ_cal: no second
network run is needed. For n = 50, 100, 250 calibration images (5 random draws from the pool for
n < 250) we report, per layer, the median and 95th percentile over filters of |μ_held/μ_cal − 1|.

A second estimator calibrates on the same n pool images at three scales (short side 192, 256,
320) and with horizontal flips, pooling all those positions; it is evaluated the same way (on
held-out images at short side 256).
"""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

import torch
from PIL import ImageOps

sys.path.insert(0, str(Path(__file__).parent))
from tqdm import tqdm

from common import DATA, table, write_results
from normstyle.io.decode import decoded, read_image
from normstyle.io.folders import image_files
from normstyle.io.resize import fit
from normstyle.io.tensors import as_tensor
from normstyle.normalization.layout import plan
from normstyle.registry import get_weights
from normstyle.statistics.engine import ActivationStats

SIZES = (50, 100, 250)
DRAWS = 5


def per_image_sums(model, prep, files, views) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """(images, filters) sums and (images, layers) counts, each image's views pooled."""
    steps = plan(model).steps
    relus = [step.relu for step in steps]
    sums, counts = [], []
    with torch.inference_mode(), ActivationStats(model, relus, track_zeros=False) as stats:
        for path in tqdm(files, desc=f"{len(views)} view(s)", unit="img"):
            stats.reset()
            image = read_image(path)
            for size, flip in views:
                view = fit(decoded(ImageOps.mirror(image) if flip else image), short_side=size)
                x = prep.from_rgb(as_tensor(view)).contiguous(memory_format=torch.channels_last)
                model(x, [relus[-1]])
            sums.append(torch.cat([stats[r].sum for r in relus]))
            counts.append(torch.tensor([stats[r].count for r in relus], dtype=torch.float64))
    return torch.stack(sums), torch.stack(counts), [step.conv for step in steps]


def layer_means(sums, counts, widths, index) -> torch.Tensor:
    total = sums[index].sum(0)
    per_filter_count = torch.repeat_interleave(counts[index].sum(0), torch.tensor(widths))
    return total / per_filter_count


def errors(mu_cal, mu_held, widths, layers) -> dict[str, tuple[float, float]]:
    out = {}
    for name, part_cal, part_held in zip(layers, mu_cal.split(widths), mu_held.split(widths)):
        live = (part_cal > 0) & (part_held > 0)
        e = (part_held[live] / part_cal[live] - 1).abs()
        out[name] = (float(e.median()), float(torch.quantile(e, 0.95)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", default=str(DATA / "imagenet-samples"))
    parser.add_argument("--no-augmented", dest="augmented", action="store_false")
    args = parser.parse_args()
    files = image_files(args.images)
    order = list(range(len(files)))
    random.Random(0).shuffle(order)
    pool, held = order[:250], order[250:]
    source = get_weights("vgg19-caffe")
    model = source.build().to(memory_format=torch.channels_last)
    sums, counts, layers = per_image_sums(model, source.preprocessing, files, [(256, False)])
    widths = [getattr(model, name).out_channels for name in layers]
    mu_held = layer_means(sums, counts, widths, held)
    estimators = {"single scale": (sums, counts)}
    if args.augmented:
        views = [(192, False), (256, False), (320, False), (256, True)]
        pool_files = [files[i] for i in pool]
        aug_sums, aug_counts, _ = per_image_sums(model, source.preprocessing, pool_files, views)
        full_sums = torch.zeros_like(sums)
        full_counts = torch.zeros_like(counts)
        full_sums[pool], full_counts[pool] = aug_sums, aug_counts
        estimators["3 scales + flip"] = (full_sums, full_counts)
    results = []
    for estimator, (s, c) in estimators.items():
        for n in SIZES:
            draws = (
                [pool[:n]]
                if n == len(pool)
                else [random.Random(d).sample(pool, n) for d in range(DRAWS)]
            )
            per_draw = [
                errors(layer_means(s, c, widths, draw), mu_held, widths, layers) for draw in draws
            ]
            for name in layers:
                median = sum(d[name][0] for d in per_draw) / len(per_draw)
                p95 = sum(d[name][1] for d in per_draw) / len(per_draw)
                results.append(
                    {"estimator": estimator, "n": n, "layer": name, "median": median, "p95": p95}
                )
    header = ["layer"] + [f"{e[:6]} n={n} med / p95" for e in estimators for n in SIZES]
    rows = []
    for name in layers:
        row = [name]
        for estimator in estimators:
            for n in SIZES:
                r = next(
                    r
                    for r in results
                    if r["estimator"] == estimator and r["n"] == n and r["layer"] == name
                )
                row.append(f"{r['median']:.3f} / {r['p95']:.3f}")
        rows.append(row)
    print(
        f"held-out: {len(held)} images; |μ_held/μ_cal − 1| per filter, averaged over {DRAWS} draws"
    )
    print(table(header, rows))
    path = write_results(
        "generalization",
        {"pool": len(pool), "held_out": len(held), "draws": DRAWS, "results": results},
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
