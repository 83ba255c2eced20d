"""The compiled Winograd transforms (runtime/native.py): against torch's convolution in float64
and against the PyTorch transforms, the inputs they refuse, and how the library is built, cached,
refused and switched off."""

from __future__ import annotations

import os
import platform
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from normstyle.nets.winograd import (
    WinogradConv2d,
    input_transform,
    output_transform,
    transform_weights,
    winograd_conv3x3,
)
from normstyle.runtime import native
from normstyle.runtime.tuning import machine_fingerprint

pytestmark = pytest.mark.skipif(
    not (os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")),
    reason="no C compiler on this machine: the PyTorch transforms run instead",
)


@pytest.fixture(autouse=True)
def _fresh_builds() -> Iterator[None]:
    """Every test sees the library loaded afresh for its own environment."""
    native._load.cache_clear()
    yield
    native._load.cache_clear()


@pytest.fixture(scope="module")
def fast(tmp_path_factory: pytest.TempPathFactory) -> native.NativeWinogradTransforms:
    native._load.cache_clear()
    transforms = native.winograd_transforms(tmp_path_factory.mktemp("native"))
    # With a C compiler present, the library must build: a failure here is a bug, not a skip.
    assert transforms is not None
    return transforms


def _relative(got: torch.Tensor, expected: torch.Tensor) -> float:
    return float((got.double() - expected).abs().max() / expected.abs().max())


@pytest.mark.parametrize(
    ("batch", "channels", "out", "height", "width"),
    [(1, 16, 16, 1, 1), (2, 32, 16, 7, 9), (1, 16, 48, 13, 6), (1, 64, 32, 25, 19)],
)
@pytest.mark.parametrize("tile", [2, 4, 6])
def test_compiled_conv_matches_conv2d_in_float64(
    fast: native.NativeWinogradTransforms,
    batch: int,
    channels: int,
    out: int,
    height: int,
    width: int,
    tile: int,
) -> None:
    """Output with bias against F.conv2d in float64, sizes not multiples of the tile, and the
    compiled path really taken (the transforms returned tensors)."""
    torch.manual_seed(channels + height)
    x = torch.randn(batch, channels, height, width).contiguous(memory_format=torch.channels_last)
    weight, bias = torch.randn(out, channels, 3, 3) * 0.1, torch.randn(out)
    transformed = transform_weights(weight, tile)
    assert fast.input_transform(x, tile) is not None
    got = winograd_conv3x3(x, transformed, bias, fast)
    expected = F.conv2d(x.double(), weight.double(), bias.double(), padding=1)
    # float32 rounding of the transforms: ~1e-6 (F(4×4)) to ~5e-6 (F(6×6)) of the largest output.
    assert _relative(got, expected) < 5e-5
    assert got.shape == expected.shape
    assert got.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize("tile", [2, 4, 6])
def test_compiled_transforms_equal_the_pytorch_ones(
    fast: native.NativeWinogradTransforms, tile: int
) -> None:
    """Same layout and same numbers (to float32 rounding) as nets/winograd.py's transforms, so
    either may meet the products of transform_weights."""
    torch.manual_seed(tile)
    x = torch.randn(2, 32, 11, 14).contiguous(memory_format=torch.channels_last)
    v = fast.input_transform(x, tile)
    assert v is not None
    torch.testing.assert_close(v, input_transform(x, tile), rtol=1e-5, atol=1e-4)
    products = torch.randn_like(v[..., :16])
    bias = torch.randn(16)
    y = fast.output_transform(products, tile, (2, 11, 14), bias)
    assert y is not None
    expected = output_transform(products, tile, (2, 11, 14)) + bias.view(1, -1, 1, 1)
    torch.testing.assert_close(y, expected, rtol=1e-5, atol=1e-4)
    assert fast.output_transform(products, tile, (2, 11, 14), None) is not None


@pytest.mark.parametrize("tile", [2, 4, 6])
def test_a_layer_with_compiled_transforms_and_its_input_gradient(
    fast: native.NativeWinogradTransforms, tile: int
) -> None:
    """Forward and backward to the input through autograd, against F.conv2d in float64."""
    torch.manual_seed(7)
    conv = nn.Conv2d(32, 16, 3, padding=1).requires_grad_(False)
    layer = WinogradConv2d.from_conv(conv)
    layer.winograd, layer.tile, layer.fast = True, tile, fast
    x = torch.randn(1, 32, 10, 13, dtype=torch.float64).contiguous(
        memory_format=torch.channels_last
    )
    leaf = x.float().requires_grad_(True)
    y = layer(leaf)
    grad = torch.randn(y.shape, dtype=torch.float64)
    y.backward(grad.float())
    reference = x.clone().requires_grad_(True)
    expected = F.conv2d(reference, conv.weight.double(), conv.bias.double(), padding=1)
    expected.backward(grad)
    assert _relative(y.detach(), expected.detach()) < 5e-5
    assert leaf.grad is not None and reference.grad is not None
    assert _relative(leaf.grad, reference.grad) < 5e-5


def test_compiled_bf16_transforms_round_the_float32_ones_once(
    fast: native.NativeWinogradTransforms,
) -> None:
    """F(2×2) on bf16 tensors: the PyTorch transforms computed in float32 from the same bf16
    values and rounded once to bf16 by torch (nearest, ties to even) — equal to the bit except
    where the two float32 sums differ in their last bit and straddle a rounding boundary; the
    bias is added before the rounding; NaN and infinities pass through; other tiles in bf16
    are refused."""
    torch.manual_seed(2)
    x = torch.randn(2, 32, 11, 14).bfloat16().contiguous(memory_format=torch.channels_last)
    v = fast.input_transform(x, 2)
    assert v is not None and v.dtype == torch.bfloat16
    expected = input_transform(x.float(), 2).bfloat16()
    assert (v != expected).float().mean() < 1e-3
    torch.testing.assert_close(v.float(), expected.float(), rtol=2**-8, atol=0)
    products = torch.randn(16, v.shape[1], 16).bfloat16()
    bias = torch.randn(16)
    y = fast.output_transform(products, 2, (2, 11, 14), bias)
    assert y is not None and y.dtype == torch.bfloat16
    reference = output_transform(products.float(), 2, (2, 11, 14)) + bias.view(1, -1, 1, 1)
    assert (y != reference.bfloat16()).float().mean() < 1e-3
    torch.testing.assert_close(y.float(), reference.bfloat16().float(), rtol=2**-8, atol=0)
    special = torch.zeros(1, 16, 2, 2).bfloat16().contiguous(memory_format=torch.channels_last)
    special[0, 0, 0, 0], special[0, 1, 0, 0] = float("nan"), float("inf")
    v = fast.input_transform(special, 2)
    assert v is not None and v[:, 0, 0].isnan().any() and v[:, 0, 1].isinf().any()
    assert fast.input_transform(x, 4) is None and fast.input_transform(x, 6) is None
    assert fast.output_transform(torch.randn(36, 24, 16).bfloat16(), 4, (2, 11, 14), None) is None


def test_inputs_the_compiled_loops_do_not_take_fall_back_to_pytorch(
    fast: native.NativeWinogradTransforms,
) -> None:
    """Channels not a multiple of the lanes, float64, another tile, a tensor autograd tracks, a
    mis-shaped product: None, and the convolution is still right."""
    x8 = torch.randn(1, 8, 9, 9)
    assert fast.input_transform(x8, 4) is None
    assert fast.input_transform(torch.randn(1, 16, 9, 9, dtype=torch.float64), 4) is None
    assert fast.input_transform(torch.randn(1, 16, 9, 9), 5) is None
    assert fast.input_transform(torch.randn(1, 16, 9, 9, requires_grad=True), 4) is None
    with torch.no_grad():
        assert fast.input_transform(torch.randn(1, 16, 9, 9, requires_grad=True), 4) is not None
    assert fast.output_transform(torch.randn(36, 5, 16), 4, (1, 9, 9), None) is None
    assert fast.output_transform(torch.randn(36, 9, 16), 4, (1, 9, 9), torch.randn(8)) is None
    weight = torch.randn(16, 8, 3, 3)
    got = winograd_conv3x3(x8, transform_weights(weight), fast=fast)
    expected = F.conv2d(x8.double(), weight.double(), padding=1)
    assert _relative(got, expected) < 5e-5


def test_switched_off_by_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """NORMSTYLE_NATIVE=off: no library, the PyTorch transforms, and another kernel-timing
    fingerprint (timings of one implementation are not reused for the other)."""
    monkeypatch.setenv("NORMSTYLE_CACHE", str(tmp_path))
    on = machine_fingerprint()
    assert native.identity(tmp_path).startswith("native-")
    monkeypatch.setenv("NORMSTYLE_NATIVE", "off")
    assert native.winograd_transforms(tmp_path) is None
    assert native.identity(tmp_path) == "torch"
    assert machine_fingerprint() != on


def test_no_compiler_means_the_pytorch_transforms(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    assert native.winograd_transforms(tmp_path) is None
    assert native.identity(tmp_path) == "torch"


@pytest.mark.skipif(
    platform.machine().lower() not in ("x86_64", "amd64"), reason="x86 instruction-set flags"
)
def test_the_isa_flags_follow_the_process_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    """An ISA-limited process (make test-avx2, the AVX2-limited benchmarks) compiles for AVX2,
    as an AVX2-only CPU would run it; otherwise for this CPU."""
    for name in ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):
        monkeypatch.delenv(name, raising=False)
    assert native.isa_flags() == ("-march=native",)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    assert native.isa_flags() == ("-mavx2", "-mfma")
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "avx2")
    assert native.isa_flags() == ("-mavx2", "-mfma")
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "default")
    assert native.isa_flags() == ()


def test_the_library_is_cached_and_a_tampered_one_is_not_loaded(tmp_path: Path) -> None:
    """Built once into the cache; a copy others may write, or a file that is not our library,
    is never loaded: the library is built afresh and works."""
    assert native.winograd_transforms(tmp_path) is not None
    (built,) = (tmp_path / "native").glob("winograd-*.so")
    assert built.stat().st_mode & 0o022 == 0
    stamp = built.stat().st_mtime_ns
    native._load.cache_clear()
    assert native.winograd_transforms(tmp_path) is not None
    assert built.stat().st_mtime_ns == stamp  # reused, not rebuilt

    built.chmod(0o666)  # writable by anyone: rebuilt in its place
    native._load.cache_clear()
    assert native.winograd_transforms(tmp_path) is not None
    assert built.stat().st_mode & 0o022 == 0

    # A file of the library's name that is not a library, in a cache not loaded from yet (the
    # dynamic linker would hand back a library already loaded from the same path).
    other = tmp_path / "other" / "native" / built.name
    other.parent.mkdir(parents=True)
    other.write_bytes(b"not a shared library")
    other.chmod(0o644)
    native._load.cache_clear()
    fast = native.winograd_transforms(tmp_path / "other")
    assert fast is not None
    if platform.system() == "Linux":
        assert other.read_bytes().startswith(b"\x7fELF")  # rebuilt in that cache
    x = torch.randn(1, 16, 6, 6)
    weight = torch.randn(16, 16, 3, 3)
    got = winograd_conv3x3(x, transform_weights(weight), fast=fast)
    assert _relative(got, F.conv2d(x.double(), weight.double(), padding=1)) < 5e-5


def test_a_library_built_for_another_cpu_is_not_reused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The CPU is part of the library's name: a cache shared by several machines (a home
    directory on a cluster) never hands one the code built for another's instructions."""
    here = native.identity(tmp_path)
    monkeypatch.setattr(native, "cpu_description", lambda: ("another CPU", "sse2"))
    native._load.cache_clear()
    there = native.identity(tmp_path)
    assert here.startswith("native-") and there.startswith("native-") and here != there
    assert len(list((tmp_path / "native").glob("winograd-*.so"))) == 2


def test_a_network_with_compiled_transforms_deep_copies_and_pickles(
    fast: native.NativeWinogradTransforms,
) -> None:
    """A deep copy keeps the loaded library; a pickle carries none (the other process attaches
    its own), and the layer still computes the convolution."""
    import copy
    import pickle

    layer = WinogradConv2d.from_conv(nn.Conv2d(16, 16, 3, padding=1).requires_grad_(False))
    layer.winograd, layer.fast = True, fast
    assert copy.deepcopy(layer).fast is fast
    restored = pickle.loads(pickle.dumps(layer))
    assert restored.fast is None
    x = torch.randn(1, 16, 5, 7)
    torch.testing.assert_close(restored(x), layer(x), rtol=1e-5, atol=1e-5)
