"""Where and in which precision the optimisation runs.

``auto`` picks CUDA, then MPS, then the CPU; and bf16 autocast where the hardware computes it
natively (CUDA devices that support it; CPUs with AVX-512-BF16 or AMX), else fp32. Losses and
Gram matrices are always computed in fp32 (see style/losses.py); only the network runs in the
lower precision. The parity of this choice with fp32 is measured by ``make bench``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Literal

import torch

from normstyle.errors import OptionError

Precision = Literal["fp32", "bf16", "fp16"]
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def cpu_has_fast_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX-512-BF16 or AMX-BF16)."""
    try:
        capability = torch._C._cpu._get_cpu_capability()
    except (AttributeError, RuntimeError):
        return False
    return bool(capability.get("avx512_bf16") or capability.get("amx_bf16"))


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


@dataclass(frozen=True)
class Runtime:
    """A device and the precision of the network's forward and backward passes."""

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


def resolve_runtime(device: str = "auto", precision: str = "auto") -> Runtime:
    """``--device`` and ``--precision`` as a :class:`Runtime`, refusing what the machine lacks."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "mps" if _mps_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise OptionError("device 'cuda' requested but CUDA is not available on this machine")
    if device == "mps" and not _mps_available():
        raise OptionError("device 'mps' requested but MPS is not available on this machine")
    if device not in ("cpu", "cuda", "mps"):
        raise OptionError(f"device must be cpu, cuda, mps or auto, not '{device}'")
    if precision == "auto":
        if device == "cuda":
            precision = "bf16" if torch.cuda.is_bf16_supported() else "fp32"
        elif device == "cpu":
            precision = "bf16" if cpu_has_fast_bf16() else "fp32"
        else:
            precision = "fp32"
    if precision not in _DTYPES:
        raise OptionError(f"precision must be fp32, bf16, fp16 or auto, not '{precision}'")
    if precision == "bf16" and device == "cuda" and not torch.cuda.is_bf16_supported():
        raise OptionError("this CUDA device does not support bf16; use --precision fp16 or fp32")
    return Runtime(torch.device(device), precision)  # type: ignore[arg-type]
