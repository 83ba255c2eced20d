"""Kernel timings measured on this machine, remembered between runs (like FFTW's "wisdom").

Which kernel is fastest for a frozen conv layer — oneDNN's direct fp32 convolution, our Winograd
F(4×4, 3×3) or F(6×6, 3×3) on the BLAS, or oneDNN's bf16 convolution — depends on the CPU, not only
on its instruction set: on an AMD Zen 4 (AVX-512-BF16, no AMX) a bf16 iteration took 0.6× the fp32
one and Winograd won only on the 512-channel layers; on an Intel Xeon with AVX-512-BF16 and no AMX
(model 207) the same bf16 iteration took 1.9× the fp32 one and Winograd won from conv3_1 on
(1.4–2.6×). No fixed table of CPUs can know that, so each layer shape is timed once on the machine
it runs on and the timings are kept in a small JSON file, keyed by everything that changes the
kernels (CPU model and flags, torch version, threads, ISA limits). The first run on a machine pays
the timing (~2 s at 256 px); later runs read it, so a seed reproduces an image bit for bit. The
choice of bf16 or fp32 is remembered per size class as well (runtime/convolutions.py,
``precision_key``): where bf16 wins, a new image shape of a class already seen times nothing.

The file is ``$NORMSTYLE_CACHE/tuning.json`` (default ``$XDG_CACHE_HOME/normstyle``, else
``~/.cache/normstyle``); ``NORMSTYLE_CACHE=off`` keeps the timings in memory only. A file that
cannot be read, or holds anything but the expected numbers, is ignored (and replaced on the
next write); a cache that cannot be written is not an error.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import platform
import tempfile
from pathlib import Path

import torch

from normstyle.runtime import native

FILE_NAME = "tuning.json"
FORMAT = 1
MAX_BYTES = 1 << 20  # a larger file is not ours: ignored
MAX_MACHINES = 16  # fingerprints kept in one file (oldest dropped first)
MAX_ENTRIES = 4096  # timings kept per machine
# The kernels a conv layer may run, as the keys of its timings.
KERNELS = ("fp32-direct", "fp32-winograd", "fp32-winograd6", "bf16-direct", "bf16-winograd2")
# A whole network's timed convs per precision (each layer on the kernel it would run), as the
# keys of the sums that decide the precision (runtime/convolutions.py, precision_key).
PRECISIONS = ("fp32", "bf16")

Timings = dict[str, float]  # kernel → seconds for one forward + backward-to-input pass


def cache_dir() -> Path | None:
    """Where the timings file lives, or None when ``NORMSTYLE_CACHE=off`` (memory only)."""
    configured = os.environ.get("NORMSTYLE_CACHE")
    if configured is not None:
        if configured.strip().lower() in ("", "off", "none", "0"):
            return None
        return Path(configured).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "normstyle"


def machine_fingerprint() -> str:
    """A digest of everything that decides which kernels torch runs and how fast."""
    model, flags = native.cpu_description()
    facts = {
        "machine": platform.machine(),
        "cpu": model,
        "flags": flags,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "aten": torch.backends.cpu.get_cpu_capability(),
        # Winograd's transforms compiled for this CPU, or PyTorch's (runtime/native.py): the
        # same layer times differently with each.
        "winograd transforms": native.identity(cache_dir()),
        "limits": {
            name: os.environ.get(name, "")
            for name in (
                "ATEN_CPU_CAPABILITY",
                "ONEDNN_MAX_CPU_ISA",
                "DNNL_MAX_CPU_ISA",
                "MKL_ENABLE_INSTRUCTIONS",
                "MKL_CBWR",
            )
        },
    }
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode()).hexdigest()[:32]


def conv_key(conv: torch.nn.Conv2d, height: int, width: int) -> str:
    """The shape a timing belongs to: channels in and out, feature map (batch of one)."""
    return f"{conv.in_channels}x{conv.out_channels}@{height}x{width}"


def _valid_timings(value: object) -> Timings | None:
    if not isinstance(value, dict):
        return None
    out: Timings = {}
    for kernel, seconds in value.items():
        if kernel not in (*KERNELS, *PRECISIONS) or isinstance(seconds, bool):
            return None
        if not isinstance(seconds, (int, float)) or not (0 < seconds < 1e4):
            return None
        if not math.isfinite(seconds):
            return None
        out[kernel] = float(seconds)
    return out


class Tuning:
    """The timings of this machine: read from the cache file once, added to, written back."""

    def __init__(self, directory: Path | None, fingerprint: str) -> None:
        self.directory = directory
        self.fingerprint = fingerprint
        self.entries: dict[str, Timings] = self._read().get(fingerprint, {})

    @property
    def path(self) -> Path | None:
        """The cache file, or None where timings are kept in memory only."""
        return None if self.directory is None else self.directory / FILE_NAME

    def get(self, key: str) -> Timings:
        """The remembered timings of one layer shape (empty if none)."""
        return dict(self.entries.get(key, {}))

    def put(self, key: str, timings: Timings) -> None:
        """Remember timings (in memory; :meth:`save` writes them)."""
        valid = _valid_timings(timings)
        if valid:
            self.entries[key] = {**self.entries.get(key, {}), **valid}

    def _read(self) -> dict[str, dict[str, Timings]]:
        """Every machine's entries in the file; {} for a missing, unreadable or foreign file."""
        path = self.path
        if path is None:
            return {}
        try:
            with open(path, "rb") as handle:
                raw = handle.read(MAX_BYTES + 1)
            if len(raw) > MAX_BYTES:
                return {}
            data = json.loads(raw)
        except (OSError, ValueError):
            return {}
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            return {}
        machines = data.get("machines")
        if not isinstance(machines, dict):
            return {}
        out: dict[str, dict[str, Timings]] = {}
        for fingerprint, entries in list(machines.items())[-MAX_MACHINES:]:
            if not isinstance(fingerprint, str) or not isinstance(entries, dict):
                continue
            kept = {}
            for key, value in list(entries.items())[:MAX_ENTRIES]:
                timings = _valid_timings(value)
                if isinstance(key, str) and len(key) < 64 and timings:
                    kept[key] = timings
            out[fingerprint] = kept
        return out

    def save(self) -> bool:
        """Write this machine's timings into the file (atomically; other machines' entries are
        kept). Returns whether it was written; a failure is not an error."""
        path = self.path
        if path is None:
            return False
        machines = self._read()
        machines.pop(self.fingerprint, None)
        machines[self.fingerprint] = dict(list(self.entries.items())[-MAX_ENTRIES:])
        machines = dict(list(machines.items())[-MAX_MACHINES:])
        payload = json.dumps({"format": FORMAT, "machines": machines}, indent=0, sort_keys=False)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            descriptor, temporary = tempfile.mkstemp(prefix=".tuning-", dir=path.parent)
            try:
                with os.fdopen(descriptor, "w") as handle:
                    handle.write(payload)
                os.replace(temporary, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(temporary)
                raise
        except OSError:
            return False
        return True


_CURRENT: Tuning | None = None


def current() -> Tuning:
    """This process's tuning (read from the cache file at first use; re-read when the cache
    directory or the machine fingerprint changes, as tests do)."""
    global _CURRENT
    directory, fingerprint = cache_dir(), machine_fingerprint()
    if _CURRENT is None or (_CURRENT.directory, _CURRENT.fingerprint) != (directory, fingerprint):
        _CURRENT = Tuning(directory, fingerprint)
    return _CURRENT
