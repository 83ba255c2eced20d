"""Running a batch: skip what is done, run the rest on an engine, record every outcome.

``OUTDIR/results.jsonl`` holds one record per job (name, status — done, failed or skipped —,
output, seconds, final loss, error, settings hash, worker), rewritten atomically as each job
ends, so an interrupted batch leaves a true record of what it finished. Outputs are written
atomically too: a PNG is complete or not there. A job whose PNG exists and carries its settings
hash is skipped: rerunning a batch resumes it.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image
from tqdm.auto import tqdm

from normstyle.batch.engines import run_local, run_ray, split
from normstyle.batch.manifest import BatchJob, ManifestError
from normstyle.batch.work import HASH_KEY, payload
from normstyle.io.files import atomic_write, final_write

RESULTS = "results.jsonl"
# Memory one worker may need for a default run (its network, a 512 px run and its targets): the
# default number of workers is capped so that they all fit in the memory available.
WORKER_BYTES = 2e9


def default_workers() -> int:
    """One worker per CPU, each with one thread — by measurement (README, "Many images"): on 2
    cores, 8 jobs at 256 px took 237 s as 2 workers × 1 thread against 280 s as 1 × 2 — but no
    more workers than the memory available holds."""
    from normstyle.batch.engines import cpu_count
    from normstyle.runtime.memory import available_memory

    available = available_memory()
    by_memory = cpu_count() if available is None else max(1, int(available // WORKER_BYTES))
    return max(1, min(cpu_count(), by_memory))


@dataclass
class Summary:
    """How a batch went."""

    done: int = 0
    failed: int = 0  # jobs that ran and failed
    skipped: int = 0
    retried: int = 0  # jobs Ray ran again after their worker died
    invalid: int = 0  # manifest lines that were not jobs (recorded as failed too)
    engine: str = ""
    records: list[dict[str, Any]] = field(default_factory=list)

    def line(self) -> str:
        parts = [f"{self.done} done", f"{self.failed} failed", f"{self.skipped} skipped"]
        if self.retried:
            parts.append(f"{self.retried} retried after a worker died")
        if self.invalid:
            parts.append(f"{self.invalid} manifest line{'s' if self.invalid != 1 else ''} not run")
        return ", ".join(parts) + (f" ({self.engine})" if self.engine else "")

    @property
    def ok(self) -> bool:
        """Every job done or skipped, every manifest line a job."""
        return not self.failed and not self.invalid


def existing_hash(path: Path) -> str | None:
    """The settings hash a PNG we wrote carries, or None."""
    try:
        with Image.open(path) as image:
            return image.info.get(HASH_KEY)
    except (OSError, SyntaxError, ValueError):
        return None


def run_batch(
    jobs: list[BatchJob],
    outdir: str | Path,
    engine: str = "local",
    workers: int | None = None,
    address: str | None = None,
    progress: bool = True,
    invalid: list[ManifestError] | None = None,
) -> Summary:
    """Run ``jobs`` into ``outdir`` on ``engine`` ("local" or "ray"); returns the summary.
    Manifest lines that were not jobs (``invalid``) are recorded as failed, by line number."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    results = outdir / RESULTS
    records: dict[str, dict[str, Any]] = {}
    summary = Summary(invalid=len(invalid or []))
    for error in invalid or []:
        records[f"line {error.line}"] = {
            "name": f"line {error.line}",
            "status": "failed",
            "error": f"manifest {error}",
        }

    def save() -> None:
        lines = "".join(json.dumps(record, default=str) + "\n" for record in records.values())
        atomic_write(results, lambda handle: handle.write(lines.encode()))

    to_run = []
    for job in jobs:
        output = outdir / f"{job.name}.png"
        digest = job.settings_hash()
        if output.is_file() and existing_hash(output) == digest:
            records[job.name] = {
                "name": job.name,
                "status": "skipped",
                "output": str(output),
                "settings_hash": digest,
                "reason": "its output exists with the same settings",
            }
            summary.skipped += 1
        else:
            to_run.append(job)
    save()
    # The same split for both engines: the same threads per job give the same images.
    workers, threads = split(workers, default_workers())
    report: list[str] = []
    payloads = (payload(job) for job in to_run)
    outcomes = (
        run_ray(payloads, threads, address, report)
        if engine == "ray"
        else run_local(payloads, workers, threads)
    )
    summary.engine = (
        f"on {workers} local worker{'s' if workers != 1 else ''} × {threads} thread"
        f"{'s' if threads != 1 else ''}"
    )
    with tqdm(
        total=len(to_run), desc="batch", unit="job", disable=None if progress else True
    ) as bar:
        for outcome in outcomes:
            record = outcome["record"]
            # A PNG and its record: both written, or neither (Ctrl-C between them used to leave
            # a finished PNG recorded as not done).
            with final_write(finish=False):
                if outcome["png"] is not None:
                    output = outdir / f"{record['name']}.png"
                    data = outcome["png"]
                    atomic_write(output, lambda handle, data=data: handle.write(data))
                    record["output"] = str(output)
                    summary.done += 1
                else:
                    summary.failed += 1
                if record.get("attempt", 1) > 1:
                    summary.retried += 1
                records[record["name"]] = record
                save()
            bar.update(1)
            bar.set_postfix(done=summary.done, failed=summary.failed, refresh=False)
    if engine == "ray" and report:
        summary.engine = f"on {report[0]}; {threads} CPU{'s' if threads != 1 else ''} a job"
    summary.records = list(records.values())
    return summary


def say_failures(summary: Summary) -> None:
    """One line per failed job on stderr."""
    for record in summary.records:
        if record.get("status") == "failed":
            print(f"normstyle batch: {record['name']}: {record.get('error')}", file=sys.stderr)
