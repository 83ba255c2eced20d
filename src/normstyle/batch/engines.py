"""Where a batch's jobs run: a pool of local processes, or a Ray cluster.

Both take the jobs' payloads (:func:`normstyle.batch.work.payload`) and yield each job's outcome
as soon as it is done, in whatever order they finish. Each worker keeps its network between
jobs. ``local``: a pool of processes, each with its share of the CPU threads. ``ray``: each job a
Ray task declaring the CPUs it uses; with no address the engine starts a local Ray cluster and
shuts it down after the batch; with one it connects to that cluster (and leaves it running). A
task whose worker dies is retried by Ray (``max_retries``); one that still fails is recorded as
failed, with Ray's reason.
"""

from __future__ import annotations

import contextlib
import itertools
import multiprocessing
import os
import shutil
import uuid
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any

from normstyle.errors import OptionError, one_line

# Jobs handed out ahead of the workers free to run them, per worker: enough to keep every worker
# busy, few enough that a batch of thousands does not read all its inputs at once.
AHEAD = 2

# Ray retries a task whose worker process died this many times before the job counts as failed.
RAY_RETRIES = 2


def cpu_count() -> int:
    """The CPUs this process may use (its affinity, not the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def split(workers: int | None, default_workers: int) -> tuple[int, int]:
    """(workers, threads each): ``workers`` given or the default, the CPUs shared out."""
    cpus = cpu_count()
    workers = max(1, min(workers or default_workers, cpus))
    return workers, max(1, cpus // workers)


def _initialise(threads: int) -> None:
    import signal

    import torch

    # Ctrl-C is the batch's to handle: it ends the workers itself (a worker's own
    # KeyboardInterrupt would only print a traceback).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(threads)


def run_local(
    payloads: Iterable[dict[str, Any]], workers: int, threads: int
) -> Iterator[dict[str, Any]]:
    """Run the jobs on a pool of ``workers`` processes with ``threads`` torch threads each.
    Jobs are handed out as workers free up, a few ahead (:data:`AHEAD` per worker): a payload —
    its input files' bytes — is made only then, so a batch of thousands holds a few in memory."""
    from normstyle.batch.work import execute

    source = iter(payloads)
    first = next(source, None)
    if first is None:
        return
    # Processes started afresh, not forked: a fork of a process with torch's thread pools
    # running can deadlock.
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(
        workers, mp_context=context, initializer=_initialise, initargs=(threads,)
    )
    pending: dict[Any, dict[str, Any]] = {}
    waiting = itertools.chain([first], source)
    try:
        while True:
            for work in itertools.islice(waiting, AHEAD * workers - len(pending)):
                pending[pool.submit(execute, work, threads)] = work
            if not pending:
                break
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                work = pending.pop(future)
                try:
                    yield future.result()
                except Exception as error:  # the worker process itself died
                    yield _failed(work, f"the worker died ({type(error).__name__}: {error})")
    finally:
        if pending:
            # Ctrl-C (or any early end): the workers are stopped at once, not waited for; what
            # they had not finished was never written, and a rerun does it.
            processes = dict(getattr(pool, "_processes", None) or {})  # pid → Process
            for process in processes.values():
                with contextlib.suppress(Exception):
                    process.terminate()
        pool.shutdown(wait=not pending, cancel_futures=True)


def require_ray() -> Any:
    """The ``ray`` module, or a one-line :class:`OptionError` saying how to install it."""
    try:
        import ray
    except ImportError:
        raise OptionError("--engine ray needs Ray: pip install 'normstyle[ray]'") from None
    return ray


def run_ray(
    payloads: Iterable[dict[str, Any]],
    threads: int,
    address: str | None = None,
    report: list[str] | None = None,
) -> Iterator[dict[str, Any]]:
    """Run each job as a Ray task needing ``threads`` CPUs, on the cluster at ``address`` or on
    a local one started (and stopped) here; ``report`` gets a line saying what the cluster
    was. As locally, jobs are submitted a few ahead of the cluster's free slots, not all at once
    (the payloads would otherwise all sit in Ray's object store)."""
    ray = require_ray()
    from normstyle.batch.work import execute

    started_here = address is None
    environment = {
        name: value
        for name, value in os.environ.items()
        if name.startswith(("NORMSTYLE_", "ATEN_", "ONEDNN_", "MKL_", "XDG_CACHE"))
    }
    try:
        if started_here:
            ray.init(
                num_cpus=cpu_count(),
                include_dashboard=False,
                logging_level="ERROR",
                log_to_driver=False,
                runtime_env={"env_vars": environment},
            )
        else:
            ray.init(address=address, logging_level="ERROR", log_to_driver=False)
    except Exception as error:
        raise OptionError(f"cannot start or reach a Ray cluster: {one_line(error)}") from None
    if report is not None:
        where = "a local Ray cluster" if started_here else f"the Ray cluster at {address}"
        report.append(f"{where}: {describe_ray()}")
    pending: dict[Any, dict[str, Any]] = {}
    run = uuid.uuid4().hex  # names this batch's attempt counters (see work._ray_attempt)
    try:
        task = ray.remote(num_cpus=threads, max_retries=RAY_RETRIES)(execute)
        waiting = iter(payloads)
        while True:
            ahead = AHEAD * max(1, _ray_cpus(ray) // max(1, threads))  # the cluster may grow
            for work in itertools.islice(waiting, max(0, ahead - len(pending))):
                pending[task.remote({**work, "run": run}, threads)] = work
            if not pending:
                break
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                work = pending.pop(ref)
                try:
                    outcome = ray.get(ref)
                except Exception as error:  # the task failed after Ray's retries
                    outcome = _failed(work, f"Ray: {one_line(error)}")
                outcome["record"]["engine"] = "ray"
                yield outcome
    finally:
        for ref in pending:
            ray.cancel(ref, force=True)
        if started_here:
            # The local cluster's attempt counters go with it (on a remote cluster they stay, a
            # few bytes each, in its temporary folder).
            counters = None
            with contextlib.suppress(Exception):
                counters = os.path.join(
                    ray.get_runtime_context().get_temp_dir(), "normstyle-attempts", run
                )
            ray.shutdown()
            if counters:
                shutil.rmtree(counters, ignore_errors=True)


def _ray_cpus(ray: Any) -> int:
    try:
        return int(ray.cluster_resources().get("CPU", 1))
    except Exception:
        return 1


def describe_ray() -> str:
    """What Ray ran on, for the summary: its nodes and CPUs."""
    ray = require_ray()
    try:
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        cpus = sum(int(n.get("Resources", {}).get("CPU", 0)) for n in nodes)
        return f"{len(nodes)} node{'s' if len(nodes) != 1 else ''}, {cpus} CPUs"
    except Exception:
        return "a Ray cluster"


def _failed(work: dict[str, Any], reason: str) -> dict[str, Any]:
    record = {"name": work["name"], "settings_hash": work["hash"], "status": "failed"}
    return {"record": {**record, "error": reason}, "png": None}
