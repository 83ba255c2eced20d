"""Calibration speed: per-filter means of vgg19-caffe on the shared ImageNet samples.

    make bench-normalize            # all 500 images, short side 256
    .venv/bin/python benchmarks/bench_normalize.py --limit 50

Variants: the straightforward fp32 loop (NCHW, decode in the main thread, float64 reductions of
every ReLU output), normstyle's calibration (channels-last, float32 per-image reductions summed
in float64, decoding in a background thread), and the same under bf16 autocast. Means are compared
with the straightforward loop's.
"""

from __future__ import annotations

import argparse
import contextlib
import sys

import torch

sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
from common import DATA, table, timed, write_results
from normstyle.io.decode import decoded
from normstyle.io.folders import image_files
from normstyle.io.resize import fit
from normstyle.io.tensors import as_tensor
from normstyle.normalization.calibrate import measure_means
from normstyle.registry import get_weights


def straightforward(files, size: int) -> dict[str, torch.Tensor]:
    source = get_weights("vgg19-caffe")
    model = source.build()
    relus = [n for n in model.layer_names if n.startswith("relu")]
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}
    with torch.no_grad():
        for path in files:
            x = source.preprocessing.from_rgb(as_tensor(fit(decoded(path), short_side=size)))
            for name, f in model(x, relus).items():
                sums[name] = sums.get(name, 0) + f.double().sum(dim=(0, 2, 3))
                counts[name] = counts.get(name, 0) + f.shape[0] * f.shape[2] * f.shape[3]
    return {name.replace("relu", "conv"): sums[name] / counts[name] for name in relus}


def ours(files, size: int, bf16: bool) -> dict[str, torch.Tensor]:
    source = get_weights("vgg19-caffe")
    context = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
    with context:
        means, _ = measure_means(source.build(), files, source.preprocessing, size, progress=False)
    return means.means


def difference(
    means: dict[str, torch.Tensor], reference: dict[str, torch.Tensor]
) -> tuple[float, float]:
    errors = torch.cat(
        [((means[k] - reference[k]).abs() / reference[k])[reference[k] > 0] for k in reference]
    )
    return float(errors.max()), float(torch.quantile(errors, 0.99))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", default=str(DATA / "imagenet-samples"))
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--short-side", type=int, default=256)
    args = parser.parse_args()
    files = image_files(args.images, args.limit)
    get_weights("vgg19-caffe").load_state_dict()  # decode once, outside the timings
    reference, base = timed(lambda: straightforward(files, args.short_side))
    rows, results = [], []
    for name, run in [
        ("straightforward fp32 loop", None),
        ("normstyle fp32", lambda: ours(files, args.short_side, False)),
        ("normstyle bf16 autocast", lambda: ours(files, args.short_side, True)),
    ]:
        means, seconds = (reference, base) if run is None else timed(run)
        worst, p99 = difference(means, reference)
        rows.append(
            [
                name,
                f"{seconds:.1f}",
                f"{len(files) / seconds:.2f}",
                f"{base / seconds:.2f}×",
                f"{worst:.1e}",
                f"{p99:.1e}",
            ]
        )
        results.append(
            {
                "variant": name,
                "seconds": seconds,
                "images": len(files),
                "speedup": base / seconds,
                "max_rel_diff": worst,
                "p99_rel_diff": p99,
            }
        )
    print(f"{len(files)} images, short side {args.short_side}")
    print(table(["variant", "s", "img/s", "speed-up", "max rel. diff of μ", "p99 rel. diff"], rows))
    name = "normalize" if args.limit is None else f"normalize-{args.limit}"
    path = write_results(name, {"size": args.short_side, "results": results})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
