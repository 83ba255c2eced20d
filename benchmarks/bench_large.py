"""Large images: peak memory and time per iteration, in tiles and in one piece.

    make bench-large                                  # 1024, 2048 and 4096 px (~20 minutes)
    .venv/bin/python benchmarks/bench_large.py --sizes 2048 --iterations 3

For each size, two whole processes (each a fresh Python running one stylisation of tubingen ×
starry_night with the defaults and ``--iterations N``): "tiles" with the default memory budget
(``--max-memory``: 6 GB, or 80% of what is available if less), and "one piece" with a budget so
large that the image is never tiled (skipped where the machine could not hold it). Each reports
its peak RSS (the kernel's own count for the child process) and the median seconds per
iteration after the first; the table and ``benchmarks/results/large.json`` give both and their
ratio.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import DATA, table, write_results
from normstyle.runtime.memory import available_memory, plan_level_memory
from normstyle.style.bands import network_geometry

# Run in the child: one stylisation, the time of every iteration, the tiling it used.
CHILD = """
import json, sys, time
from normstyle.style.options import StyleOptions
from normstyle.style.transfer import run
content, style, size, iterations, budget = sys.argv[1:6]
stamps = []
options = StyleOptions(long_side=int(size), iterations=int(iterations), seed=0, progress=False,
                       max_memory=budget or None)
result = run(content, style, options, on_step=lambda *_: stamps.append(time.perf_counter()))
steps = sorted(b - a for a, b in zip(stamps, stamps[1:]))
print(json.dumps({"seconds_per_iteration": steps[len(steps) // 2], "tiles": result.tiles,
                  "runtime": result.runtime, "loss": result.final["total"]}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1024,2048,4096", help="long sides [1024,2048,4096]")
    parser.add_argument("--iterations", type=int, default=3, help="iterations per run [3]")
    args = parser.parse_args()
    content, style = DATA / "photos/tubingen.jpg", DATA / "art/starry_night.jpg"
    geometry = network_geometry("vgg19", "avg", ["relu4_2", "relu5_1"])
    available = available_memory() or 0.0
    results, rows = [], []
    for size in sorted({int(s) for s in args.sizes.split(",")}):
        width, height = size, round(size * 768 / 1024)  # tubingen's aspect ratio
        whole = plan_level_memory(
            width,
            height,
            width * height,
            args.iterations,
            "fp32",
            1e15,
            geometry.stride,
            geometry.halo,
        )
        entry: dict = {"size": size}
        for mode, budget in (("tiles", "default"), ("one piece", "1000G")):
            if mode == "one piece" and whole.needed > 0.9 * available:
                entry[mode] = {"skipped": f"needs ~{whole.needed / 1e9:.0f} GB"}
                continue
            report = _isolated(content, style, size, args.iterations, budget)
            entry[mode] = report
        results.append(entry)
        tiles, piece = entry["tiles"], entry["one piece"]
        ratio = (
            f"{tiles['seconds_per_iteration'] / piece['seconds_per_iteration']:.2f}×"
            if "seconds_per_iteration" in piece
            else "—"
        )
        rows.append(
            [
                size,
                tiles.get("tiles") or "one piece",
                f"{tiles['peak_gb']:.2f}",
                f"{tiles['seconds_per_iteration']:.1f}",
                f"{piece['peak_gb']:.2f}" if "peak_gb" in piece else piece["skipped"],
                f"{piece['seconds_per_iteration']:.1f}"
                if "seconds_per_iteration" in piece
                else "—",
                ratio,
            ]
        )
        print(json.dumps(entry), flush=True)
    print(
        table(
            [
                "px",
                "default: cut",
                "peak GB",
                "s/it",
                "one piece: peak GB",
                "s/it",
                "tiles ÷ one piece",
            ],
            rows,
        )
    )
    print(f"wrote {write_results('large', {'iterations': args.iterations, 'results': results})}")


def _isolated(content: Path, style: Path, size: int, iterations: int, budget: str) -> dict:
    """One run in its own grandchild process group, so that its peak RSS is its own: a fresh
    Python that runs the child and reports the child's ru_maxrss."""
    wrapper = (
        "import json, resource, subprocess, sys\n"
        "done = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
        "if done.returncode: sys.exit(done.stderr.strip().splitlines()[-1])\n"
        "report = json.loads(done.stdout.strip().splitlines()[-1])\n"
        "report['peak_gb'] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024 / 1e9\n"
        "print(json.dumps(report))\n"
    )
    inner = [sys.executable, "-c", CHILD, str(content), str(style), str(size), str(iterations)]
    inner.append(budget if budget != "default" else "")
    done = subprocess.run(
        [sys.executable, "-c", wrapper, *inner], capture_output=True, text=True, check=False
    )
    if done.returncode:
        raise RuntimeError(done.stderr.strip())
    return json.loads(done.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    main()
