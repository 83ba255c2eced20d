"""Winograd F(4×4, 3×3) against torch's own convolution in float64, and the per-layer choice."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from normstyle.nets.chain import chain_of
from normstyle.nets.vgg import VGG
from normstyle.nets.winograd import (
    WinogradConv2d,
    is_winograd_compatible,
    transform_weights,
    winograd_conv3x3,
    winograd_matrices,
)
from normstyle.runtime.convolutions import (
    MAX_TIMED_POSITIONS,
    REPEATS,
    ConvolutionChoice,
    choose_convolutions,
    fastest_precision,
    input_sizes,
    precision_key,
    prepare_winograd,
)
from normstyle.runtime.tuning import Tuning, conv_key


@pytest.mark.parametrize(
    ("batch", "channels", "out", "height", "width"),
    [(1, 3, 5, 1, 1), (1, 4, 6, 4, 4), (2, 5, 3, 7, 9), (1, 16, 8, 13, 6)],
)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("tile", [2, 4, 6])
def test_winograd_matches_conv2d(
    batch: int, channels: int, out: int, height: int, width: int, dtype: torch.dtype, tile: int
) -> None:
    """Output and input gradient against F.conv2d in float64, sizes not multiples of the tile."""
    torch.manual_seed(height * width)
    conv = nn.Conv2d(channels, out, 3, padding=1).requires_grad_(False).to(dtype)
    layer = WinogradConv2d.from_conv(conv)
    layer.winograd, layer.tile = True, tile
    x = torch.randn(batch, channels, height, width, dtype=torch.float64)
    x = x.contiguous(memory_format=torch.channels_last)
    w64, b64 = conv.weight.double(), conv.bias.double()

    leaf = x.detach().to(dtype, copy=True).requires_grad_(True)
    y = layer(leaf)
    grad = torch.randn(y.shape, dtype=torch.float64)
    y.backward(grad.to(dtype))

    reference = x.detach().clone().requires_grad_(True)
    expected = F.conv2d(reference, w64, b64, padding=1)
    expected.backward(grad)

    # float32: the transforms cost a few units in the last place, relative to the largest
    # output (measured ~1e-5 on VGG-19's layers with F(4×4, 3×3), 1–2.5e-5 with F(6×6, 3×3)).
    tolerance = {"rtol": 0.0, "atol": 1e-10 if dtype == torch.float64 else 5e-5}
    scale = expected.abs().max().item()
    torch.testing.assert_close(y.double() / scale, expected.detach() / scale, **tolerance)
    grad_scale = reference.grad.abs().max().item()
    torch.testing.assert_close(
        leaf.grad.double() / grad_scale, reference.grad / grad_scale, **tolerance
    )
    assert y.is_contiguous(memory_format=torch.channels_last)
    assert conv.weight.grad is None and layer.weight is conv.weight


@pytest.mark.parametrize("tile", [4, 6])
def test_the_matrices_compute_a_one_dimensional_correlation_exactly(tile: int) -> None:
    """Aᵀ[(G g) ⊙ (Bᵀ d)] = (d ⋆ g)[i] = Σ_k d[i + k] g[k] for every d and g: checked on the
    unit vectors, so every entry of the tables is checked, in float64."""
    bt, g_matrix, at = winograd_matrices(tile)
    block = tile + 2
    for k, j in itertools.product(range(3), range(block)):
        g, d = torch.eye(3, dtype=torch.float64)[k], torch.eye(block, dtype=torch.float64)[j]
        expected = torch.tensor([float(j - i == k) for i in range(tile)], dtype=torch.float64)
        torch.testing.assert_close(at @ ((g_matrix @ g) * (bt @ d)), expected, atol=1e-13, rtol=0)
    with pytest.raises(ValueError, match="tile"):
        winograd_matrices(5)


def test_weight_transform_is_g_w_gt_for_each_channel_pair() -> None:
    """The 6×6 transformed filter of a delta kernel is the outer product of G's columns."""
    weight = torch.zeros(2, 1, 3, 3, dtype=torch.float64)
    weight[0, 0, 1, 2] = 1.0  # row 1, column 2
    weight[1, 0] = torch.arange(9, dtype=torch.float64).view(3, 3)
    g = torch.tensor(
        [
            [1 / 4, 0, 0],
            [-1 / 6, -1 / 6, -1 / 6],
            [-1 / 6, 1 / 6, -1 / 6],
            [1 / 24, 1 / 12, 1 / 6],
            [1 / 24, -1 / 12, 1 / 6],
            [0, 0, 1],
        ],
        dtype=torch.float64,
    )
    u = transform_weights(weight).view(6, 6, 1, 2)  # (column b, row a, in, out)
    torch.testing.assert_close(u[:, :, 0, 0].T, torch.outer(g[:, 1], g[:, 2]))
    torch.testing.assert_close(u[:, :, 0, 1].T, g @ weight[1, 0] @ g.T)


def test_winograd_without_bias_and_with_a_contiguous_input() -> None:
    conv = nn.Conv2d(3, 4, 3, padding=1, bias=False).requires_grad_(False).double()
    x = torch.randn(1, 3, 10, 11, dtype=torch.float64)
    got = winograd_conv3x3(x, transform_weights(conv.weight))
    torch.testing.assert_close(got, F.conv2d(x, conv.weight, padding=1), rtol=1e-10, atol=1e-10)


def test_only_plain_3x3_convs_are_compatible() -> None:
    assert is_winograd_compatible(nn.Conv2d(3, 4, 3, padding=1))
    for conv in (
        nn.Conv2d(3, 4, 3, padding=1, stride=2),
        nn.Conv2d(3, 4, 3, padding=0),
        nn.Conv2d(3, 4, 5, padding=2),
        nn.Conv2d(4, 4, 3, padding=1, groups=2),
        nn.Conv2d(3, 4, 3, padding=2, dilation=2),
        nn.Conv2d(3, 4, 3, padding=1, padding_mode="reflect"),
    ):
        assert not is_winograd_compatible(conv)
        with pytest.raises(ValueError):
            WinogradConv2d.from_conv(conv)


def test_under_autocast_the_larger_tiles_run_the_direct_conv() -> None:
    """In a bf16 network F(4×4)'s and F(6×6)'s transforms would lose precision: autocast means
    the direct conv for them (the same numbers as the conv's own, to the bit)."""
    conv = nn.Conv2d(4, 4, 3, padding=1).requires_grad_(False)
    layer = WinogradConv2d.from_conv(conv)
    x = torch.randn(1, 4, 8, 8)
    for tile in (4, 6):
        layer.winograd, layer.tile = True, tile
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y, expected = layer(x), conv(x)
        assert y.dtype == torch.bfloat16 == expected.dtype
        assert torch.equal(y, expected)


@pytest.mark.parametrize("channels", [5, 32])  # PyTorch's transforms; compiled where available
def test_under_autocast_f2_runs_in_bf16_with_about_the_direct_convs_error(channels: int) -> None:
    """F(2×2) in bf16 (the products in bf16, the transforms in float32, rounded once): output
    and input gradient within twice the error of oneDNN's direct bf16 conv on the same input,
    both against F.conv2d in float64 — where F(4×4) in bf16 was ten times worse."""
    torch.manual_seed(channels)
    conv = nn.Conv2d(channels, 48, 3, padding=1).requires_grad_(False)
    layer = WinogradConv2d.from_conv(conv)
    assert prepare_winograd(nn.Sequential(layer)) == ["0"]  # attaches the compiled transforms
    x = torch.randn(2, channels, 19, 22).contiguous(memory_format=torch.channels_last)
    grad = torch.randn(2, 48, 19, 22, dtype=torch.float64)
    x64 = x.double().requires_grad_(True)
    expected = F.conv2d(x64, conv.weight.double(), conv.bias.double(), padding=1)
    expected.backward(grad)
    expected = expected.detach()

    outputs = []

    def run(winograd: bool) -> tuple[float, float]:
        layer.winograd, layer.tile = winograd, 2
        leaf = x.clone().requires_grad_(True)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = layer(leaf)
        assert y.dtype == torch.bfloat16
        y.backward(grad.to(y.dtype))
        assert leaf.grad is not None
        outputs.append(y.detach())
        out = float((y.detach().double() - expected).norm() / expected.norm())
        back = float((leaf.grad.double() - x64.grad).norm() / x64.grad.norm())
        return out, back

    direct, winograd = run(False), run(True)
    assert not torch.equal(outputs[0], outputs[1])  # F(2×2) ran, not the direct conv again
    assert 1e-4 < direct[0] < 1e-2 and 1e-4 < direct[1] < 1e-2  # bf16's rounding, not fp32's
    assert winograd[0] < 2 * direct[0] and winograd[1] < 2 * direct[1]


def small_vgg() -> VGG:
    torch.manual_seed(0)
    return VGG("vgg11", pooling="avg").requires_grad_(False)


def small_timings(
    fast: set[str], side: int = 32, bf16: float = 0.7, bf16_fast: frozenset[str] = frozenset()
) -> tuple[VGG, Tuning]:
    """VGG-11 with switchable convs, and a tuning (in memory) whose remembered timings make
    Winograd F(4×4) twice as fast as direct on the layers in ``fast`` and twice as slow
    elsewhere; F(6×6) a little slower than F(4×4), except on conv3_2, where it is faster; bf16's
    direct kernel takes ``bf16`` of fp32's, and bf16's F(2×2) half of that on the layers in
    ``bf16_fast`` and twice as much elsewhere."""
    model = small_vgg()
    prepare_winograd(model)
    tuning = Tuning(None, "test")
    sizes = input_sizes(chain_of(model), (1, 3, side, side))
    for name in ("conv2_1", "conv3_1", "conv3_2", "conv4_1", "conv4_2", "conv5_1", "conv5_2"):
        four = 0.5 if name in fast else 2.0
        six = four * (0.8 if name == "conv3_2" else 1.2)
        key = conv_key(getattr(model, name), *sizes[name])
        timings = {"fp32-direct": 1.0, "fp32-winograd": four, "fp32-winograd6": six}
        bf16_winograd = bf16 * (0.5 if name in bf16_fast else 2.0)
        tuning.put(key, {**timings, "bf16-direct": bf16, "bf16-winograd2": bf16_winograd})
    return model, tuning


def no_clock() -> float:
    raise AssertionError("nothing should be timed: every shape's timings are remembered")


def test_auto_follows_the_remembered_timings_layer_by_layer() -> None:
    """Winograd exactly where it was timed faster by the margin; conv1_1 (3 channels) and
    layers past the deepest wanted one are not considered; nothing is timed again."""
    model, tuning = small_timings({"conv2_1", "conv3_2"})
    example = torch.zeros(1, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    timings = choose_convolutions(model, example, ["relu3_2"], "auto", no_clock, tuning)
    assert [(t.name, t.chosen) for t in timings] == [
        ("conv2_1", "winograd"),
        ("conv3_1", "direct"),
        ("conv3_2", "winograd"),
    ]
    assert model.conv2_1.winograd and model.conv3_2.winograd
    assert (model.conv2_1.tile, model.conv3_2.tile) == (4, 6)  # the faster tile
    assert not model.conv1_1.winograd and not model.conv3_1.winograd
    assert not model.conv4_1.winograd


def test_timings_are_measured_once_per_shape_and_remembered_in_the_file(tmp_path: Path) -> None:
    """A first run times each new shape (conv5_1 and conv5_2 share one) on the real layers and
    writes them; a new process reads them and times nothing; ``measure`` times afresh."""
    model = small_vgg()
    prepare_winograd(model)
    example = torch.zeros(1, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    calls = {"n": 0}

    def clock() -> float:
        calls["n"] += 1
        return time.perf_counter()

    tuning = Tuning(tmp_path, "machine")
    timings = choose_convolutions(model, example, ["relu5_2"], "auto", clock, tuning)
    assert [t.name for t in timings] == [
        "conv2_1", "conv3_1", "conv3_2", "conv4_1", "conv4_2", "conv5_1", "conv5_2"
    ]  # fmt: skip
    assert all(t.direct > 0 and t.winograd > 0 for t in timings)
    # 6 shapes × 3 kernels (direct, two tiles) × (1 warm-up + REPEATS) passes × 2 clock reads
    assert calls["n"] == 6 * 3 * (1 + REPEATS) * 2
    assert timings[-1].direct == timings[-2].direct  # one shape, one timing
    saved = json.loads((tmp_path / "tuning.json").read_text())
    assert len(saved["machines"]["machine"]) == 6
    calls["n"] = 0
    reread = Tuning(tmp_path, "machine")
    again = choose_convolutions(model, example, ["relu5_2"], "auto", clock, reread)
    assert calls["n"] == 0 and again == timings
    choose_convolutions(model, example, ["relu5_2"], "measure", clock, Tuning(tmp_path, "machine"))
    assert calls["n"] == 6 * 3 * (1 + REPEATS) * 2


def test_the_network_runs_in_bf16_only_where_its_convs_are_timed_faster() -> None:
    """bf16 against fp32's faster kernel per layer, with the margin; under ``direct``, against
    the direct kernel only."""
    model, tuning = small_timings(set())  # fp32: direct 1.0 (Winograd 2.0); bf16: 0.7
    example = torch.zeros(1, 3, 32, 32)
    assert fastest_precision(model, example, ["relu5_2"], "auto", no_clock, tuning) == "bf16"
    model, tuning = small_timings({"conv2_1", "conv3_1", "conv3_2", "conv4_1", "conv4_2"})
    # fp32 with Winograd: 4 × 0.5 + 0.4 + 2 × 1.0 = 4.4 against bf16's 7 × 0.7 = 4.9
    assert fastest_precision(model, example, ["relu5_2"], "auto", no_clock, tuning) == "fp32"
    assert fastest_precision(model, example, ["relu5_2"], "direct", no_clock, tuning) == "bf16"


def test_bf16_is_kept_where_its_convs_are_timed_a_tenth_faster() -> None:
    """On a Zen 4 whose bf16 convs were timed at 0.82–0.90 of fp32's, whole runs were 0.79–0.83
    of fp32's time; a margin of 0.85 picked fp32 in one fresh run in two (README, Speed). bf16
    timed at 0.9 of fp32 is taken; at 0.97, fp32."""
    example = torch.zeros(1, 3, 32, 32)
    model, tuning = small_timings(set(), bf16=0.9)
    assert fastest_precision(model, example, ["relu5_2"], "auto", no_clock, tuning) == "bf16"
    model, tuning = small_timings(set(), bf16=0.97)
    assert fastest_precision(model, example, ["relu5_2"], "auto", no_clock, tuning) == "fp32"


def test_the_precision_is_timed_once_per_size_class_and_remembered(tmp_path: Path) -> None:
    """bf16 or fp32 is decided from the two sums of the first timing in a size class (pixels
    within a factor of 4), also for images of shapes never timed; another class, or ``measure``,
    times again; a new process reads the decision from the file."""
    model, tuning = small_timings(set(), side=32, bf16=0.9)  # 32×32: 1024 px, class 5
    tuning.directory = tmp_path
    calls = {"n": 0}

    def clock() -> float:
        calls["n"] += 1
        return time.perf_counter()

    def decide(
        size: tuple[int, int], choice: ConvolutionChoice, timer: Callable[[], float], at: Tuning
    ) -> str:
        example = torch.zeros(1, 3, *size)
        return fastest_precision(model, example, ["relu5_2"], choice, timer, at)

    assert decide((32, 32), "auto", no_clock, tuning) == "bf16"
    reread = Tuning(tmp_path, "test")  # a new process
    assert decide((28, 36), "auto", no_clock, reread) == "bf16"  # 1008 px, class 5: not timed
    decide((64, 64), "auto", clock, reread)
    assert calls["n"] > 0  # 4096 px: class 6, timed
    calls["n"] = 0
    decide((32, 32), "measure", clock, reread)
    assert calls["n"] > 0
    # the decision follows the remembered sums, with the margin, whatever the shape
    key = precision_key([("conv", model.conv2_1, (8, 8))], ["fp32-direct"], 30 * 34)
    assert key == precision_key([("other", model.conv2_1, (4, 4))], ["fp32-direct"], 1024)
    assert key != precision_key([("conv", model.conv2_1, (8, 8))], ["fp32-direct"], 4096)
    assert key != precision_key([("conv", model.conv3_1, (8, 8))], ["fp32-direct"], 1024)
    model, tuning = small_timings(set(), side=32, bf16=0.9)
    timed = [
        (name, getattr(model, name), (0, 0))
        for name in ("conv2_1", "conv3_1", "conv3_2", "conv4_1", "conv4_2", "conv5_1", "conv5_2")
    ]
    kernels = ["fp32-direct", "fp32-winograd", "fp32-winograd6", "bf16-direct", "bf16-winograd2"]
    tuning.put(precision_key(timed, kernels, 900), {"fp32": 1.0, "bf16": 0.97})
    example = torch.zeros(1, 3, 30, 30)
    assert fastest_precision(model, example, ["relu5_2"], "auto", no_clock, tuning) == "fp32"


def test_fp32_is_kept_only_after_a_second_timing(monkeypatch: pytest.MonkeyPatch) -> None:
    """A first timing where bf16 loses is repeated before fp32 is remembered for the size class,
    and each kernel keeps its faster pass: a stall in one pass does not decide; a CPU whose
    bf16 is slower in both timings gets fp32."""
    model = small_vgg()
    prepare_winograd(model)
    example = torch.zeros(1, 3, 32, 32)
    passes: list[str] = []

    def scripted(bf16: list[float]) -> Callable[..., dict[str, float]]:
        def time_kernels(module: nn.Module, height: int, width: int, kernels, clock):
            passes.append(f"{module.in_channels}@{height}")
            timing = bf16[0] if len(passes) <= 6 else bf16[1]  # 6 shapes in small_vgg
            slow = {"bf16-direct": timing, "bf16-winograd2": 3.0}
            return {k: slow.get(k, 1.0) for k in kernels}

        return time_kernels

    monkeypatch.setattr("normstyle.runtime.convolutions._time_kernels", scripted([1.5, 0.7]))
    tuning = Tuning(None, "test")
    assert fastest_precision(model, example, ["relu5_2"], "auto", no_clock, tuning) == "bf16"
    assert len(passes) == 12  # every shape timed twice
    assert all(t["bf16-direct"] == 0.7 for t in tuning.entries.values() if "bf16-direct" in t)
    passes.clear()
    monkeypatch.setattr("normstyle.runtime.convolutions._time_kernels", scripted([1.5, 1.2]))
    tuning = Tuning(None, "test")
    assert fastest_precision(model, example, ["relu5_2"], "auto", no_clock, tuning) == "fp32"
    assert len(passes) == 12
    passes.clear()
    monkeypatch.setattr("normstyle.runtime.convolutions._time_kernels", scripted([0.7, 0.7]))
    tuning = Tuning(None, "test")
    assert fastest_precision(model, example, ["relu5_2"], "auto", no_clock, tuning) == "bf16"
    assert len(passes) == 6  # bf16 won the first timing: not timed again


def test_explicit_choices_and_where_auto_does_not_measure() -> None:
    model = small_vgg()
    prepare_winograd(model)
    example = torch.zeros(1, 3, 16, 16)
    assert choose_convolutions(model, example, ["relu2_1"], "winograd") == []
    assert model.conv1_1.winograd and model.conv2_1.winograd and not model.conv3_1.winograd
    choose_convolutions(model, example, ["relu5_2"], "direct")
    assert not any(getattr(model, n).winograd for n in ("conv1_1", "conv2_1", "conv5_2"))
    choose_convolutions(model, example.bfloat16(), ["relu5_2"], "winograd")
    assert model.conv3_2.winograd and model.conv3_2.tile == 2  # bf16's tile
    # auto and measure in fp16 (no Winograd kernel of its own): nothing timed, every conv direct
    for choice in ("auto", "measure"):
        assert choose_convolutions(model, example.half(), ["relu5_2"], choice, no_clock) == []
        assert not any(getattr(model, n).winograd for n in ("conv1_1", "conv3_2", "conv5_2"))


def test_in_bf16_each_layer_takes_f2_where_it_was_timed_faster() -> None:
    """A bf16 network chooses between bf16's direct kernel and F(2×2), with the margin; and the
    precision decision counts each layer on the bf16 kernel it would run."""
    model, tuning = small_timings(set(), bf16=0.7, bf16_fast=frozenset({"conv3_1", "conv4_2"}))
    example = torch.zeros(1, 3, 32, 32, dtype=torch.bfloat16)
    timings = choose_convolutions(model, example, ["relu4_2"], "auto", no_clock, tuning)
    chosen = [t.name for t in timings if t.chosen == "winograd"]
    assert chosen == ["conv3_1", "conv4_2"]
    assert all(getattr(model, n).tile == 2 for n in chosen)
    assert not model.conv3_2.winograd and not model.conv4_1.winograd
    # fp32 with Winograd on every layer: 7 × 0.5 (0.4 on conv3_2) = 3.4; bf16 direct: 7 × 0.7
    # = 4.9, but with F(2×2) on all but conv2_1 at 0.35: 6 × 0.35 + 0.7 = 2.8 ≤ 0.95 × 3.4
    every = {"conv2_1", "conv3_1", "conv3_2", "conv4_1", "conv4_2", "conv5_1", "conv5_2"}
    some = frozenset(every - {"conv2_1"})
    for bf16_fast, expected in ((frozenset(), "fp32"), (some, "bf16")):
        model, tuning = small_timings(every, bf16=0.7, bf16_fast=bf16_fast)
        precision = fastest_precision(model, example.float(), ["relu5_2"], "auto", no_clock, tuning)
        assert precision == expected


def test_large_feature_maps_are_not_timed_and_stay_direct() -> None:
    """Past MAX_TIMED_POSITIONS a timing would cost seconds and gigabytes: direct, untimed."""
    model = small_vgg()
    prepare_winograd(model)
    side = 2 * int(MAX_TIMED_POSITIONS**0.5) + 8  # conv2_1's map (side / 2)² is too large
    example = torch.zeros(1, 3, side, side)
    tuning = Tuning(None, "test")
    with torch.no_grad():
        timings = choose_convolutions(model, example, ["relu2_1"], "auto", no_clock, tuning)
    assert timings == [] and not model.conv2_1.winograd


@pytest.mark.parametrize("ceil_mode", [False, True])
def test_input_sizes_match_the_shapes_the_layers_produce(ceil_mode: bool) -> None:
    """The timed shapes, from shape formulas alone, against running the layers."""
    layers = [
        ("conv", nn.Conv2d(3, 4, 3, padding=1)),
        ("pool", nn.MaxPool2d(3, stride=2, padding=1, ceil_mode=ceil_mode)),
        ("strided", nn.Conv2d(4, 4, 5, stride=2, dilation=2)),
        ("relu", nn.ReLU()),
        ("avg", nn.AvgPool2d(2, ceil_mode=ceil_mode)),
        ("same", nn.Conv2d(4, 4, 3, padding="same")),
        ("adaptive", nn.AdaptiveAvgPool2d((3, None))),
        ("last", nn.Identity()),
    ]
    for height, width in itertools.product((23, 24, 30), (25, 32)):
        sizes = input_sizes(layers, (1, 3, height, width))
        x = torch.zeros(1, 3, height, width)
        for name, module in layers:
            assert sizes[name] == tuple(x.shape[2:]), (name, height, width)
            x = module(x)


def test_a_vgg_with_winograd_layers_computes_the_same_features() -> None:
    """The whole chain (in-place ReLUs included) against the untouched network, in float64."""
    model = small_vgg().double()
    x = torch.rand(1, 3, 20, 28, dtype=torch.float64)
    expected = model(x, ["relu4_2"])["relu4_2"]
    prepare_winograd(model)
    choose_convolutions(model, x, ["relu4_2"], "winograd")
    torch.testing.assert_close(model(x, ["relu4_2"])["relu4_2"], expected, rtol=1e-9, atol=1e-9)
    assert "conv1_1.weight" in model.state_dict()


def test_one_tile_of_transformed_weights_is_kept_per_dtype() -> None:
    """Switching tiles replaces a layer's transformed weights (VGG-19's fp32 F(6×6) weights alone
    take ~0.7 GB); bf16's are kept beside fp32's; changed weights are transformed afresh."""
    conv = nn.Conv2d(16, 16, 3, padding=1).requires_grad_(False)
    layer = WinogradConv2d.from_conv(conv)
    x = torch.randn(1, 16, 8, 8)
    layer.winograd = True
    for tile in (4, 6):
        layer.tile = tile
        layer(x)
    layer.tile = 2
    with torch.autocast("cpu", dtype=torch.bfloat16):
        layer(x)
    cached = layer._transformed
    assert cached is not None
    assert {k: v[0] for k, v in cached.items() if k != "weights"} == {
        torch.float32: 6,
        torch.bfloat16: 2,
    }
    with torch.no_grad():
        conv.weight.mul_(2)
    layer.tile = 4
    expected = F.conv2d(x.double(), conv.weight.double(), conv.bias.double(), padding=1)
    assert torch.allclose(layer(x).double(), expected, rtol=1e-4, atol=1e-4)
