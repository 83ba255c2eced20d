"""Where and in which precision the optimisation runs.

``auto`` picks CUDA, then MPS, then the CPU; and bf16 autocast where the hardware computes it
natively, else fp32. On the CPU that bf16 is a candidate only: a stylisation keeps it where its
convs are timed faster than fp32's on this machine (``runtime.convolutions.fastest_precision``),
because native is not always faster — on an Intel Xeon with AVX-512-BF16 but no AMX a bf16
iteration took 1.9× the fp32 one, on an AMD Zen 4 0.5–0.6×. Losses and Gram matrices are always
computed in fp32 (see style/losses.py); only the network runs in the lower precision. The parity
of this choice with fp32 is measured by ``make bench``.

The CPU policy asks torch, never a table of CPU names: a precision is *native* on this CPU when
the CPU has the instructions (``torch.cpu.get_capabilities()``), ATen's kernels may use AVX-512
(``torch.backends.cpu.get_cpu_capability()``, which reflects ``ATEN_CPU_CAPABILITY``), and oneDNN
may use them (its own query, and ``ONEDNN_MAX_CPU_ISA``). An ISA-limited process
(``ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2``) therefore behaves exactly like an AVX2-only
CPU. Emulated bf16 runs ~10× slower than fp32 (a VGG-19 conv, forward and backward: 720 ms against
70 ms on an AVX2 EPYC), so an explicit request for a precision this CPU does not run natively is
refused rather than run slowly.
"""

from __future__ import annotations

import contextlib
import os
import platform
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import torch

from normstyle.errors import OptionError

Precision = Literal["fp32", "bf16", "fp16"]
PrecisionChoice = Literal["auto", "fp32", "bf16", "fp16"]  # what a user may ask for
Device = Literal["cpu", "cuda", "mps"]
DeviceChoice = Literal["auto", "cpu", "cuda", "mps"]
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}

# oneDNN's ISA names in increasing order (its documentation of ONEDNN_MAX_CPU_ISA). A limit below
# AVX512_CORE_BF16 rules out native bf16, below AVX512_CORE_FP16 native fp16.
_ONEDNN_ISAS = (
    "SSE41",
    "AVX",
    "AVX2",
    "AVX2_VNNI",
    "AVX2_VNNI_2",
    "AVX512_CORE",
    "AVX512_CORE_VNNI",
    "AVX512_CORE_BF16",
    "AVX512_CORE_FP16",
    "AVX10_1_512",
    "AVX512_CORE_AMX",
    "AVX10_1_512_AMX",
    "AVX512_CORE_AMX_FP16",
    "AVX10_1_512_AMX_FP16",
)
_NEEDS_ISA = {"bf16": "AVX512_CORE_BF16", "fp16": "AVX512_CORE_FP16"}
# The CPU instructions (torch's capability names) that compute each precision natively.
_INSTRUCTIONS = {"bf16": ("avx512_bf16", "amx_bf16"), "fp16": ("avx512_fp16", "amx_fp16")}


def _onednn_limit() -> str | None:
    """The ISA limit set for oneDNN by the environment, upper-case, or None."""
    for name in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):
        value = os.environ.get(name, "").strip().upper()
        if value and value not in ("ALL", "DEFAULT"):
            return value
    return None


def cpu_precision_gap(precision: str) -> str | None:
    """Why this CPU (as this process sees it) does not compute ``precision`` natively, or None
    if it does. fp32 is always native."""
    if precision == "fp32":
        return None
    if precision not in _INSTRUCTIONS:
        raise OptionError(f"precision must be fp32, bf16 or fp16, not '{precision}'")
    machine = platform.machine().lower()
    if machine not in ("x86_64", "amd64"):
        # Arm's bf16 paths in this torch build are unmeasured here: fp32 until they are.
        return f"{precision} on {machine} CPUs is not supported by normstyle yet"
    gap = _avx512_gap(_INSTRUCTIONS[precision], _NEEDS_ISA[precision])
    if gap:
        return gap
    query = {
        "bf16": torch.ops.mkldnn._is_mkldnn_bf16_supported,
        "fp16": torch.ops.mkldnn._is_mkldnn_fp16_supported,
    }[precision]
    try:
        supported = bool(query())
    except (AttributeError, RuntimeError):
        supported = False
    if not supported:
        return f"oneDNN in this torch build does not support {precision} here"
    return None


def _avx512_gap(instructions: tuple[str, ...], onednn_isa: str) -> str | None:
    """Why this process cannot use any of ``instructions`` (torch's capability names) with
    torch's AVX-512 kernels and oneDNN up to ``onednn_isa``, or None."""
    capabilities = torch.cpu.get_capabilities()
    if not any(capabilities.get(name) for name in instructions):
        return f"this CPU has no {' or '.join(n.upper() for n in instructions)} instructions"
    aten = torch.backends.cpu.get_cpu_capability()
    if aten != "AVX512":
        return f"torch's CPU kernels are limited to {aten} (ATEN_CPU_CAPABILITY)"
    limit = _onednn_limit()
    if limit in _ONEDNN_ISAS and _ONEDNN_ISAS.index(limit) < _ONEDNN_ISAS.index(onednn_isa):
        return f"oneDNN is limited to {limit} (ONEDNN_MAX_CPU_ISA)"
    return None


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU, as this process sees it, computes bf16 natively (AVX-512-BF16 or AMX)."""
    return cpu_precision_gap("bf16") is None


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


@dataclass(frozen=True)
class Runtime:
    """A device and the precision of the network's forward and backward passes.

    Constructing one directly skips the policy of :func:`resolve_runtime` (tests use that to
    exercise a precision's numerics on any CPU, emulated where it is not native).
    """

    device: torch.device
    precision: Precision

    @property
    def dtype(self) -> torch.dtype:
        """The autocast dtype (float32: no autocast)."""
        return _DTYPES[self.precision]

    @contextlib.contextmanager
    def autocast(self) -> Iterator[None]:
        """Autocast for the network's forward pass (a no-op in fp32)."""
        if self.precision == "fp32":
            yield
            return
        with torch.autocast(self.device.type, dtype=self.dtype):
            yield

    @property
    def memory_format(self) -> torch.memory_format:
        """channels_last: oneDNN's and cuDNN's fast layout for convolutions."""
        return torch.channels_last

    def describe(self) -> str:
        """E.g. ``cpu, bf16``."""
        return f"{self.device.type}, {self.precision}"


def resolve_runtime(device: DeviceChoice = "auto", precision: PrecisionChoice = "auto") -> Runtime:
    """``--device`` and ``--precision`` as a :class:`Runtime`, refusing what the machine lacks.

    ``auto`` precision is bf16 where the device computes it natively, else fp32 (on the CPU a
    stylisation then times that bf16 against fp32 and keeps the faster). An explicit
    bf16 or fp16 that the CPU would only emulate is refused (:class:`OptionError`): it would run
    many times slower than fp32 for no gain.
    """
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "mps" if _mps_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise OptionError("device 'cuda' requested but CUDA is not available on this machine")
    if device == "mps" and not _mps_available():
        raise OptionError("device 'mps' requested but MPS is not available on this machine")
    if device not in ("cpu", "cuda", "mps"):
        raise OptionError(f"device must be cpu, cuda, mps or auto, not '{device}'")
    if precision not in (*_DTYPES, "auto"):
        raise OptionError(f"precision must be fp32, bf16, fp16 or auto, not '{precision}'")
    if precision == "auto":
        if device == "cuda":
            precision = "bf16" if torch.cuda.is_bf16_supported() else "fp32"
        elif device == "cpu":
            precision = "bf16" if cpu_has_fast_bf16() else "fp32"
        else:
            precision = "fp32"
    elif device == "cpu" and (gap := cpu_precision_gap(precision)) is not None:
        raise OptionError(
            f"--precision {precision} is not native on this CPU ({gap}); emulated it runs"
            " ~10× slower than fp32: use --precision fp32 (or auto)"
        )
    if precision == "bf16" and device == "cuda" and not torch.cuda.is_bf16_supported():
        raise OptionError("this CUDA device does not support bf16; use --precision fp16 or fp32")
    return Runtime(torch.device(device), precision)  # type: ignore[arg-type]
