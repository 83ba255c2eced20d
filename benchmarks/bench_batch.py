"""Batch throughput: 8 jobs at 256 px, locally (1 worker × 2 threads, 2 workers × 1 thread) and on
a local Ray cluster, each as a whole ``normstyle batch`` process into a fresh folder.

    make bench-batch          # ~20 minutes on 2 cores

Reports jobs per minute and the per-job overhead: the batch's wall time minus the time its jobs
spent stylising (as each job reports it), divided by the concurrency, per job — start-up, the
workers' network loading, Ray's scheduling. Writes ``benchmarks/results/batch.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import DATA, table, write_results

PAIRS = [
    ("photos/tubingen.jpg", "art/starry_night.jpg"),
    ("photos/golden_gate.jpg", "art/the_scream.jpg"),
    ("photos/hoovertowernight.jpg", "art/shipwreck.jpg"),
    ("photos/tubingen.jpg", "art/woman-with-hat-matisse.jpg"),
    ("photos/golden_gate.jpg", "art/starry_night.jpg"),
    ("photos/hoovertowernight.jpg", "art/the_scream.jpg"),
    ("photos/tubingen.jpg", "art/shipwreck.jpg"),
    ("photos/golden_gate.jpg", "art/woman-with-hat-matisse.jpg"),
]
CONFIGS = {
    "local, 1 worker × 2 threads": ["--engine", "local", "--workers", "1"],
    "local, 2 workers × 1 thread": ["--engine", "local", "--workers", "2"],
    "Ray (local cluster), 1 job × 2 CPUs": ["--engine", "ray", "--workers", "1"],
    "Ray (local cluster), 2 jobs × 1 CPU": ["--engine", "ray", "--workers", "2"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256, help="long side [256]")
    parser.add_argument("--jobs", type=int, default=8, help="jobs per batch [8]")
    parser.add_argument("--configs", default="all", help="comma-separated indices [all]")
    args = parser.parse_args()
    chosen = list(CONFIGS.items())
    if args.configs != "all":
        chosen = [chosen[int(i)] for i in args.configs.split(",")]
    rows, results = [], []
    with tempfile.TemporaryDirectory(prefix="normstyle-bench-batch-") as scratch:
        manifest = Path(scratch) / "jobs.jsonl"
        lines = [
            {
                "content": str((DATA / c).resolve()),
                "style": str((DATA / s).resolve()),
                "size": args.size,
                "name": f"job{n}",
            }
            for n, (c, s) in enumerate((PAIRS * 4)[: args.jobs])
        ]
        manifest.write_text("\n".join(json.dumps(line) for line in lines))
        for label, options in chosen:
            out = Path(scratch) / label.split(",")[0].split(" ")[0].lower() / str(len(results))
            command = [sys.executable, "-m", "normstyle", "batch", str(manifest), "-o", str(out)]
            start = time.perf_counter()
            done = subprocess.run(
                [*command, *options, "--no-progress"], capture_output=True, text=True
            )
            wall = time.perf_counter() - start
            if done.returncode:
                raise SystemExit(f"{label}: {done.stderr.strip()}")
            records = [
                json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()
            ]
            busy = sum(r.get("seconds", 0.0) for r in records)
            concurrency = int(options[options.index("--workers") + 1])
            overhead = (wall - busy / concurrency) / len(records)
            entry = {
                "config": label,
                "wall_seconds": wall,
                "jobs": len(records),
                "jobs_per_minute": 60 * len(records) / wall,
                "job_seconds_mean": busy / len(records),
                "overhead_seconds_per_job": overhead,
                "summary": done.stdout.strip(),
            }
            results.append(entry)
            rows.append(
                [
                    label,
                    f"{wall:.0f}",
                    f"{entry['jobs_per_minute']:.2f}",
                    f"{entry['job_seconds_mean']:.1f}",
                    f"{overhead:.1f}",
                ]
            )
            print(json.dumps(entry), flush=True)
    print(
        table(["engine", "wall s", "jobs/min", "s per job (in the worker)", "overhead s/job"], rows)
    )
    print(f"wrote {write_results('batch', {'size': args.size, 'results': results})}")


if __name__ == "__main__":
    main()
