"""Time to a finished image, side by side with pastiche, and how stylised each output is.

    make bench          # under an hour on 2 cores: see the Makefile for the pairs and sizes
    make bench-512      # pastiche at 512 px too
    .venv/bin/python benchmarks/bench_finish.py --pair PHOTO.jpg PAINTING.jpg --sizes 256

For each content/style pair and size, up to three whole processes, one after the other:
- our reference: ``normstyle stylize --init noise --scales 1 --iterations 1000 --precision fp32``
  (the paper's set-up run to convergence; every other option at its default) — its final loss
  is the pair's reference loss. It is stored in benchmarks/results/finish-references.json,
  keyed by the two files' bytes, the size and the objective's defaults and code, and reused
  while those stay the same (``--fresh-references`` reruns it): it costs 5–10× our default run
  and is not what is being timed;
- our default: ``normstyle stylize`` with nothing but ``--size`` (and ``--seed``), as a first run
  on a new machine (no remembered kernel timings: it times them); with ``--after-demo`` also as
  a run after the README's ``make demo`` (its timings remembered: where bf16 wins, a 256 px run
  times nothing);
- pastiche's default: ``python -m pastiche`` with nothing but ``--size`` (1000 L-BFGS steps
  from the content image), on the pairs and sizes ``--pastiche-pairs``/``--pastiche-sizes`` pick.
Each output is judged by our default objective re-evaluated in fp32 at full size ("finished":
≤ 1.05 × the reference loss) and by the neutral yardstick of benchmarks/yardstick.py (deep
style left, content distance). Wall times are whole processes, start-up included.
Results: benchmarks/results/NAME.json (``--results``) and a Markdown table on stdout.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from functools import cache
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from common import DATA, machine, table, write_results
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
HELD_OUT_NAME = "grace_hopper×swirls (held out)"
FINISHED = 1.05
WORK = Path("benchmarks/results/finish")
REFERENCES = Path(__file__).parent / "results" / "finish-references.json"
RUNS = ("reference", "ours", "ours-after-demo", "pastiche")
OBJECTIVE_CODE = Path(__file__).resolve().parents[1] / "src" / "normstyle" / "style"
# What a reference's loss depends on: the objective's defaults and formulas, and the optimiser
# that takes its 1000 iterations (its line search changed the references on 2026-12-06; its
# L-BFGS step rule, lbfgs.py, on 2026-12-07).
OBJECTIVE_MODULES = ("options.py", "losses.py", "targets.py", "optimizer.py", "lbfgs.py")


@cache
def evaluation_network(weights: str, pooling: str) -> torch.nn.Module:
    """The normalised network our objective runs on, built once per benchmark (it is frozen)."""
    source = for_stylization(weights)
    return source.build(pooling=pooling).to(memory_format=torch.channels_last)


def fp32_loss(content: Path, style: Path, image: Path, size: int) -> float:
    """Our default objective, in fp32, of ``image`` (resized to the content's size)."""
    options = StyleOptions(long_side=size, progress=False)
    source = for_stylization(options.weights)
    runtime = resolve_runtime("cpu", "fp32")
    model = evaluation_network(options.weights, options.pooling)
    content_rgb = as_tensor(fit(decoded(content), long_side=size))
    style_rgb = as_tensor(fit(decoded(style), long_side=round(size * options.style_scale)))
    loss = build_loss(model, source.preprocessing, content_rgb, [style_rgb], [1.0], options)
    height, width = content_rgb.shape[2:]
    rgb = as_tensor(fit(decoded(image), long_side=size))
    if rgb.shape[2:] != (height, width):  # pastiche rounds its sizes its own way
        rgb = torch.nn.functional.interpolate(rgb, size=(height, width), mode="bicubic")
    x = source.preprocessing.from_rgb(rgb.clamp(0, 1))
    return float(evaluate(model, loss, x, runtime).total)


def judged(
    content: Path, style: Path, image: Path, size: int, seconds: float, said: dict | None = None
) -> dict:
    """A run's wall time and what it said of itself (``said``: our runs, see :func:`reported`),
    its fp32 loss under our objective and the yardstick's verdict."""
    return {
        "seconds": seconds,
        **(said or {}),
        "loss": fp32_loss(content, style, image, size),
        **measure(content, style, image),
    }


def timed(command: list[str], env: dict[str, str] | None = None) -> tuple[float, str]:
    """Wall time of a whole process (which must succeed), and what it printed on stdout."""
    start = time.perf_counter()
    done = subprocess.run(command, check=True, stdout=subprocess.PIPE, text=True, env=env)
    return time.perf_counter() - start, done.stdout


# Our CLI's last line: "wrote OUT (W×H, N iterations, [in BANDS,] DEVICE, PRECISION, S s, …".
WROTE = re.compile(r"^wrote .* \(\d+×\d+, (\d+) iterations,(?: in [^,]*,)? (\w+), (\w+), ", re.M)


def reported(stdout: str) -> dict:
    """The iterations and precision our CLI says a run took (which precision a run takes can
    depend on kernel timings, so the benchmark records it: README, Speed), else nothing."""
    match = WROTE.search(stdout)
    if match is None:
        return {}
    return {"iterations": int(match[1]), "device": match[2], "precision": match[3]}


# The README's `make demo` (Makefile: DEMO_OPTIONS), with one iteration at each of its two levels:
# it times and remembers the same kernels as the whole demo, in seconds.
DEMO = ("builtin:grace_hopper", "builtin:swirls", "--size", "256", "--seed", "1", "--scales", "2")
DEMO_SHORT = ("--coarse-iterations", "1", "--iterations", "1")


def ours(
    content: Path, style: Path, out: Path, size: int, *options: str, after_demo: bool = False
) -> tuple[float, dict]:
    """Our CLI as a first run on a new machine: with an empty kernel-timings cache (see
    runtime/tuning.py), so the time includes timing this machine's kernels; with
    ``after_demo``, as a run after the README's ``make demo`` (the demo's timings remembered,
    not timed). Returns the wall time and what the run reported (:func:`reported`)."""
    command = [sys.executable, "-m", "normstyle", "stylize", str(content), str(style)]
    command += ["-o", str(out), "--size", str(size), "--seed", "0", *options]
    with tempfile.TemporaryDirectory(prefix="normstyle-cache-") as cache:
        env = {**os.environ, "NORMSTYLE_CACHE": cache}
        if after_demo:
            demo = [sys.executable, "-m", "normstyle", "stylize", *DEMO, *DEMO_SHORT]
            demo += ["-o", str(Path(cache) / "demo.png"), "--no-progress"]
            subprocess.run(demo, check=True, stdout=subprocess.DEVNULL, env=env)
        seconds, stdout = timed(command, env)
    return seconds, reported(stdout)


def pastiche(content: Path, style: Path, out: Path, size: int, *options: str) -> float:
    command = [sys.executable, "-m", "pastiche", "--content", str(content), "--styles"]
    command += [str(style), "-o", str(out), "--size", str(size), "--device", "cpu", "--seed", "0"]
    return timed([*command, *options, "--no-verbose"])[0]


REFERENCE_FLAGS = (
    "--init",
    "noise",
    "--scales",
    "1",
    "--iterations",
    "1000",
    "--precision",
    "fp32",
)


def digest(path: Path) -> str:
    """The first 16 hex digits of a file's SHA-256."""
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def reference_key(content: Path, style: Path, size: int) -> str:
    """What a reference depends on: the two files, the size, the seed, the reference's flags,
    every default option and the modules that define the objective and its optimiser (a changed
    default, loss formula or step rule misses the cache; so does any edit of those modules, which
    at worst costs a rerun)."""
    objective = repr(StyleOptions(long_side=size, progress=False))
    objective += "".join(digest(OBJECTIVE_CODE / name) for name in OBJECTIVE_MODULES)
    recipe = f"{size} seed 0 {' '.join(REFERENCE_FLAGS)} {objective}"
    recipe_digest = hashlib.sha256(recipe.encode()).hexdigest()[:16]
    return f"{digest(content)}-{digest(style)}-{size}-{recipe_digest}"


def cached_references() -> dict[str, dict]:
    """The stored references (benchmarks/results/finish-references.json), else none."""
    try:
        return json.loads(REFERENCES.read_text())["references"]
    except (OSError, ValueError, KeyError):
        return {}


def store_reference(key: str, entry: dict) -> None:
    references = cached_references()
    references[key] = entry
    REFERENCES.write_text(json.dumps({"references": references}, indent=1, sort_keys=True) + "\n")


def named_pairs(args: argparse.Namespace) -> list[tuple[str, Path, Path, bool]]:
    """(name, content, style, always) for each pair asked for; ``always``: run at every size."""
    chosen: list[tuple[str, Path, Path, bool]] = []
    if args.held_out:
        files = [WORK / f"held_out_{name.removeprefix('builtin:')}.png" for name in HELD_OUT]
        for name, path in zip(HELD_OUT, files):
            builtin_image(name).save(path)
        chosen.append((HELD_OUT_NAME, *files, True))
    for content, style in args.pair or []:
        content, style = Path(content), Path(style)
        for path in (content, style):
            if not path.is_file():
                raise SystemExit(f"bench_finish.py: error: no such image file: {path}")
        chosen.append((f"{content.stem}×{style.stem}", content, style, True))
    shared = list(PAIRS.items())[: args.pairs]
    chosen += [(name, DATA / content, DATA / style, False) for name, (content, style) in shared]
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=len(PAIRS), help="shared-data pairs [all 4]")
    parser.add_argument("--sizes", default="256,512", help="long sides [256,512]")
    parser.add_argument(
        "--pairs-at-512", type=int, default=2, help="shared-data pairs run from 512 px up [2]"
    )
    parser.add_argument(
        "--held-out",
        action="store_true",
        help="add a pair outside ../shared/data (builtin:grace_hopper × builtin:swirls), first",
    )
    parser.add_argument(
        "--held-out-sizes", default=None, help="sizes at which the held-out pair runs [every size]"
    )
    parser.add_argument(
        "--pair",
        nargs=2,
        action="append",
        metavar=("CONTENT", "STYLE"),
        help="add a pair of your own image files (repeatable); run at every size",
    )
    parser.add_argument(
        "--pastiche-pairs",
        type=int,
        default=None,
        help="run pastiche on the first N pairs of each size only (held-out and --pair first)"
        " [all]",
    )
    parser.add_argument(
        "--pastiche-sizes", default=None, help="sizes at which pastiche runs [every size]"
    )
    parser.add_argument(
        "--fresh-references",
        action="store_true",
        help="rerun every reference, even where benchmarks/results/finish-references.json has it",
    )
    parser.add_argument(
        "--after-demo",
        action="store_true",
        help="also run ours as after the README's make demo (the demo's kernel timings"
        " remembered), beside the first run",
    )
    parser.add_argument("--results", default="finish", help="results/NAME.json [finish]")
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    sizes = [int(s) for s in args.sizes.split(",")]
    pastiche_sizes = (
        sizes if args.pastiche_sizes is None else [int(s) for s in args.pastiche_sizes.split(",")]
    )
    chosen = named_pairs(args)
    if not chosen:
        raise SystemExit("bench_finish.py: error: no pairs: give --pairs N, --held-out or --pair")
    results, rows = [], []
    for size in sizes:
        shared_at_size = len(PAIRS) if size < 512 else args.pairs_at_512
        at_size = [p for p in chosen if p[3]] + [p for p in chosen if not p[3]][:shared_at_size]
        if args.held_out_sizes is not None and str(size) not in args.held_out_sizes.split(","):
            at_size = [p for p in at_size if p[0] != HELD_OUT_NAME]
        for index, (pair, content, style, _) in enumerate(at_size):
            stem = WORK / f"{pair.split(' ')[0].replace('×', '_x_')}_{size}"
            image = {name: stem.with_name(f"{stem.name}_{name}.png") for name in RUNS}
            entry: dict = {"pair": pair, "size": size, "runs": {}}
            key = reference_key(content, style, size)
            stored = None if args.fresh_references else cached_references().get(key)
            if stored is None:
                seconds, said = ours(
                    content, style, image["reference"], size, *REFERENCE_FLAGS, "--no-progress"
                )
                stored = judged(content, style, image["reference"], size, seconds, said)
                stored.update(pair=pair, measured=machine())
                store_reference(key, stored)
                entry["runs"]["reference"] = {**stored, "cached": False}
            else:
                entry["runs"]["reference"] = {**stored, "cached": True}
            seconds, said = ours(content, style, image["ours"], size)
            entry["runs"]["ours"] = judged(content, style, image["ours"], size, seconds, said)
            if args.after_demo:
                out = image["ours-after-demo"]
                seconds, said = ours(content, style, out, size, after_demo=True)
                entry["runs"]["ours-after-demo"] = judged(content, style, out, size, seconds, said)
            wanted = args.pastiche_pairs is None or index < args.pastiche_pairs
            if wanted and size in pastiche_sizes:
                seconds = pastiche(content, style, image["pastiche"], size)
                entry["runs"]["pastiche"] = judged(content, style, image["pastiche"], size, seconds)
            reference = entry["runs"]["reference"]["loss"]
            anchor = entry["runs"].get("pastiche", {}).get("seconds")
            for name, r in entry["runs"].items():
                r["finished"] = r["loss"] <= FINISHED * reference
                cached = r.get("cached")
                rows.append(
                    [
                        pair,
                        size,
                        name + (" (stored)" if cached else ""),
                        f"{r['iterations']}, {r['precision']}" if "precision" in r else "—",
                        f"{r['seconds']:.0f}",
                        f"{anchor / r['seconds']:.2f}×" if anchor else "—",
                        f"{r['loss']:.4g}",
                        f"{r['loss'] / reference:.3f}",
                        "yes" if r["finished"] else "no",
                        f"{r['style_left_deep']:.3f}",
                        f"{r['content_distance']:.4g}",
                    ]
                )
            results.append(entry)
            print(json.dumps(entry), flush=True)
            # Written after every pair: an interrupted run of hours keeps what it measured.
            path = write_results(args.results, {"results": results})
    print(
        table(
            [
                "pair",
                "px",
                "run",
                "iterations, precision",
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
    print(
        "(stored): a reference measured earlier, with the same files, size and defaults;"
        " its wall time is from the machine and date in the JSON, not this run"
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
