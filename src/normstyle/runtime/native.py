"""C kernels shipped as source, compiled on the machine that runs them, loaded with ctypes.

One kernel so far: Winograd's input and output transforms (``winograd_transforms.c``). In
PyTorch they are strided slices, stacks and small matrix products that read and write each
feature map several times; in C each tile is read once and written once. Measured on an AMD EPYC
Zen 4 with the ISA limited to AVX2 (2026-12-07, 256 px, one forward pass per layer, fp32): conv2_2
with F(6×6) 13.8 → 9.6 ms, conv3_2 9.0 → 7.1 ms, and conv1_2 — where Winograd lost to oneDNN's
direct conv with the PyTorch transforms (23.7 against 19.0 ms) — 12.9 ms with F(4×4) (README,
Speed). The products stay in the BLAS. They also run F(2×2) in bf16 (float32 inside, one
rounding), which PyTorch's transforms could do only with a float32 copy of every tensor.

The library is built with the system's C compiler (``$CC``, else ``cc``) for this CPU
(``-march=native``; ``-mavx2 -mfma`` where ``ATEN_CPU_CAPABILITY=avx2`` or ``ONEDNN_MAX_CPU_ISA=
AVX2`` limit the process to AVX2, so that an ISA-limited run measures what an AVX2-only CPU would
run) into ``$NORMSTYLE_CACHE/native`` (see :mod:`normstyle.runtime.tuning`), named by a digest of
the source, the compiler, the flags and the CPU: a machine compiles it once (0.6–0.9 s on a Zen 4).
Where there is no compiler, or it fails, or ``NORMSTYLE_NATIVE=off``, the PyTorch transforms run:
the same numbers up to rounding (both tested against ``F.conv2d`` in float64), only slower. The
library's OpenMP threads are torch's own (the dynamic linker resolves ``libgomp.so.1`` to the copy
torch loaded). A cached library is loaded only if this user owns it and no one else may write it.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
from pathlib import Path

import torch

SOURCE = Path(__file__).with_name("winograd_transforms.c")
ENV = "NORMSTYLE_NATIVE"
COMPILE_SECONDS = 120  # a compiler that takes longer is given up on (the PyTorch path runs)
_BASE_FLAGS = ("-O3", "-std=c11", "-fPIC", "-shared", "-fopenmp")
# The tiles the compiled transforms handle, by dtype (bf16: F(2×2) only, see the C file).
TILES = {torch.float32: (2, 4, 6), torch.bfloat16: (2,)}


def enabled() -> bool:
    """Whether native kernels may be used (``NORMSTYLE_NATIVE=off`` disables them)."""
    return os.environ.get(ENV, "").strip().lower() not in ("off", "0", "no", "false")


def isa_flags() -> tuple[str, ...]:
    """The instruction-set flags for this process: the CPU's own, or AVX2 + FMA where the
    process is limited to AVX2 (as ``make test-avx2`` and the ISA-limited benchmarks do)."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return ("-mcpu=native",) if platform.machine().lower() in ("aarch64", "arm64") else ()
    aten = os.environ.get("ATEN_CPU_CAPABILITY", "").strip().lower()
    onednn = os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or ""
    if aten == "default":
        return ()
    if aten == "avx2" or onednn.strip().upper().startswith("AVX2"):
        return ("-mavx2", "-mfma")
    return ("-march=native",)


def identity(directory: Path | None) -> str:
    """What runs Winograd's transforms in this process, for the kernel-timing fingerprint:
    ``native-<digest>`` or ``torch``."""
    return _load(directory, isa_flags())[1] if enabled() else "torch"


def library(directory: Path | None) -> ctypes.CDLL | None:
    """The compiled transforms, or None where they are disabled or cannot be built."""
    return _load(directory, isa_flags())[0] if enabled() else None


@functools.cache
def cpu_description() -> tuple[str, str]:
    """The CPU's model name and its sorted feature flags, from ``/proc/cpuinfo`` (empty where
    there is none)."""
    model, flags = "", ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key = line.split(":", 1)[0].strip()
            if key == "model name" and not model:
                model = line.split(":", 1)[1].strip()
            elif key in ("flags", "Features") and not flags:
                flags = " ".join(sorted(line.split(":", 1)[1].split()))
    return model or platform.processor(), flags


@functools.cache
def _load(directory: Path | None, flags: tuple[str, ...]) -> tuple[ctypes.CDLL | None, str]:
    compiler = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if compiler is None or not SOURCE.is_file():
        return None, "torch"
    version = _run([compiler, "--version"])
    if version is None:
        return None, "torch"
    for tried in (flags, ()) if flags else ((),):
        # The CPU is part of the name: built for one CPU (-march=native), a library in a home
        # directory that several machines share would crash another with an illegal instruction.
        facts = [SOURCE.read_bytes(), version, " ".join(_BASE_FLAGS + tried), *cpu_description()]
        digest = hashlib.sha256(
            b"\0".join(f if isinstance(f, bytes) else f.encode() for f in facts)
        ).hexdigest()[:16]
        path = _built(compiler, tried, digest, directory)
        lib = None if path is None else _opened(path)
        if lib is None and path is not None:
            # A cached file that does not load as ours (truncated, foreign): built afresh.
            path = _built(compiler, tried, digest, directory, rebuild=True)
            lib = None if path is None else _opened(path)
        if lib is not None:
            return lib, f"native-{digest}"
    return None, "torch"


def _opened(path: Path) -> ctypes.CDLL | None:
    """The library at ``path`` with its functions declared, or None if it is not ours."""
    try:
        lib = ctypes.CDLL(str(path))
        _declare(lib)
    except (OSError, AttributeError):
        return None
    return lib


def _built(
    compiler: str,
    flags: tuple[str, ...],
    digest: str,
    directory: Path | None,
    rebuild: bool = False,
) -> Path | None:
    """The library for ``digest``: from the cache if it is there and safe (unless
    ``rebuild``), else compiled into the cache, else into a directory of this process's own."""
    name = f"winograd-{digest}.so"
    if directory is not None:
        cached = directory / "native" / name
        if _safe(cached) and not rebuild:
            return cached
        with contextlib.suppress(OSError):
            cached.parent.mkdir(parents=True, exist_ok=True)
            if _compile(compiler, flags, cached):
                return cached
    private = Path(_private_dir()) / name
    return private if _compile(compiler, flags, private) else None


def _compile(compiler: str, flags: tuple[str, ...], target: Path) -> bool:
    """Compile into a temporary file beside ``target``, then rename it (another process may be
    compiling the same library)."""
    try:
        descriptor, temporary = tempfile.mkstemp(prefix=".build-", suffix=".so", dir=target.parent)
    except OSError:
        return False
    os.close(descriptor)
    try:
        command = [compiler, *_BASE_FLAGS, *flags, "-o", temporary, str(SOURCE)]
        if _run(command) is None:
            return False
        os.chmod(temporary, 0o644)
        os.replace(temporary, target)
        return True
    except OSError:
        return False
    finally:
        with contextlib.suppress(OSError):
            os.unlink(temporary)


def _run(command: list[str]) -> str | None:
    """A command's output, or None if it cannot run, fails or takes too long."""
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=COMPILE_SECONDS,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def _safe(path: Path) -> bool:
    """A file this user owns that no one else may write (a shared cache could hold anything)."""
    try:
        status = path.stat()
    except OSError:
        return False
    owner = os.getuid() if hasattr(os, "getuid") else status.st_uid
    return path.is_file() and status.st_uid == owner and not status.st_mode & 0o022


@functools.cache
def _private_dir() -> str:
    """A directory of this process's own, removed at exit (the cache is off or unwritable)."""
    path = tempfile.mkdtemp(prefix="normstyle-native-")
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def _declare(lib: ctypes.CDLL) -> None:
    i64, pointer = ctypes.c_int64, ctypes.c_void_p
    lib.normstyle_lanes.restype = ctypes.c_int
    lib.normstyle_lanes.argtypes = []
    lib.normstyle_winograd_input.restype = ctypes.c_int
    lib.normstyle_winograd_input.argtypes = [
        *(pointer, i64, i64, i64, i64, i64),
        *(pointer, i64, i64, i64),
    ]
    lib.normstyle_winograd_output.restype = ctypes.c_int
    lib.normstyle_winograd_output.argtypes = [
        *(pointer, i64, i64, i64, i64, i64),
        *(pointer, pointer, i64, i64, i64),
    ]


class NativeWinogradTransforms:
    """Winograd's input and output transforms in C (``winograd_transforms.c``), for CPU tensors
    whose channel counts are multiples of the library's lanes (16): float32 with tiles 2, 4 and
    6, bfloat16 with tile 2 (in and out in that type, computed in float32); each method returns
    None for anything else, and the caller runs the PyTorch transforms instead."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        self.lib = lib
        self.lanes = int(lib.normstyle_lanes())

    def __deepcopy__(self, memo: dict) -> NativeWinogradTransforms:
        return self  # a loaded library is shared, not copied (a deep-copied network keeps it)

    def __reduce__(self) -> tuple:
        # A pickled network (sent to another process or machine) runs the PyTorch transforms
        # there until its runtime attaches that machine's own (prepare_winograd).
        return (_none, ())

    def _fits(self, tensor: torch.Tensor, channels: int) -> bool:
        return (
            tensor.dtype in (torch.float32, torch.bfloat16)
            and tensor.device.type == "cpu"
            and channels > 0
            and channels % self.lanes == 0
        )

    def input_transform(self, x: torch.Tensor, tile: int) -> torch.Tensor | None:
        """``Bᵀ d B`` of every (tile+2)² block of ``x`` (B, C, H, W; zero padding 1):
        ((tile+2)², tiles, C) in ``x``'s dtype, or None."""
        batch, channels, height, width = x.shape
        if tile not in TILES.get(x.dtype, ()) or not self._fits(x, channels) or _tracked(x):
            return None
        nhwc = x.permute(0, 2, 3, 1).contiguous()  # no copy for a channels-last x
        rows, cols = -(-height // tile), -(-width // tile)
        v = torch.empty((tile + 2) ** 2, batch * rows * cols, channels, dtype=x.dtype)
        status = self.lib.normstyle_winograd_input(
            *(nhwc.data_ptr(), batch, height, width, channels, tile),
            *(v.data_ptr(), rows, cols, x.dtype == torch.bfloat16),
        )
        return v if status == 0 else None

    def output_transform(
        self,
        products: torch.Tensor,
        tile: int,
        size: tuple[int, int, int],
        bias: torch.Tensor | None,
    ) -> torch.Tensor | None:
        """``Aᵀ m A`` (+ ``bias``) of the products ((tile+2)², tiles, C_out) for a batch, height
        and width (``size``), cropped to them: (B, C_out, H, W) channels-last in the products'
        dtype, or None. The bias is float32."""
        batch, height, width = size
        rows, cols = -(-height // tile), -(-width // tile)
        channels = products.shape[-1]
        expected = ((tile + 2) ** 2, batch * rows * cols, channels)
        if tile not in TILES.get(products.dtype, ()) or not self._fits(products, channels):
            return None
        if tuple(products.shape) != expected or _tracked(products):
            return None
        if bias is not None and (
            bias.dtype != torch.float32 or bias.numel() != channels or _tracked(bias)
        ):
            return None
        products = products.contiguous()
        bias = None if bias is None else bias.contiguous().view(-1)
        y = torch.empty(
            (batch, channels, height, width),
            dtype=products.dtype,
            memory_format=torch.channels_last,
        )
        status = self.lib.normstyle_winograd_output(
            products.data_ptr(),
            batch,
            height,
            width,
            channels,
            tile,
            None if bias is None else bias.data_ptr(),
            y.data_ptr(),
            rows,
            cols,
            products.dtype == torch.bfloat16,
        )
        return y if status == 0 else None


def _none() -> None:
    return None


def _tracked(tensor: torch.Tensor) -> bool:
    """Whether autograd would need a gradient through this call (the C loops have none)."""
    return torch.is_grad_enabled() and tensor.requires_grad


def winograd_transforms(directory: Path | None) -> NativeWinogradTransforms | None:
    """The compiled transforms for this process, or None (then PyTorch's run)."""
    lib = library(directory)
    return None if lib is None else _transforms(lib)


@functools.cache
def _transforms(lib: ctypes.CDLL) -> NativeWinogradTransforms:
    return NativeWinogradTransforms(lib)
