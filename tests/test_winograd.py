"""Winograd F(4×4, 3×3) against torch's own convolution in float64, and the per-layer choice."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from normstyle.nets.vgg import VGG
from normstyle.nets.winograd import (
    WinogradConv2d,
    is_winograd_compatible,
    transform_weights,
    winograd_conv3x3,
)
from normstyle.runtime.convolutions import choose_convolutions, input_positions, prepare_winograd


@pytest.mark.parametrize(
    ("batch", "channels", "out", "height", "width"),
    [(1, 3, 5, 1, 1), (1, 4, 6, 4, 4), (2, 5, 3, 7, 9), (1, 16, 8, 13, 6)],
)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_winograd_matches_conv2d(
    batch: int, channels: int, out: int, height: int, width: int, dtype: torch.dtype
) -> None:
    """Output and input gradient against F.conv2d in float64, sizes not multiples of 4."""
    torch.manual_seed(height * width)
    conv = nn.Conv2d(channels, out, 3, padding=1).requires_grad_(False).to(dtype)
    layer = WinogradConv2d.from_conv(conv)
    layer.winograd = True
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

    # float32: F(4×4, 3×3)'s transforms cost a few units in the last place, relative to the
    # largest output (measured ~1e-5 on VGG-19's layers).
    tolerance = {"rtol": 0.0, "atol": 1e-10 if dtype == torch.float64 else 3e-5}
    scale = expected.abs().max().item()
    torch.testing.assert_close(y.double() / scale, expected.detach() / scale, **tolerance)
    grad_scale = reference.grad.abs().max().item()
    torch.testing.assert_close(
        leaf.grad.double() / grad_scale, reference.grad / grad_scale, **tolerance
    )
    assert y.is_contiguous(memory_format=torch.channels_last)
    assert conv.weight.grad is None and layer.weight is conv.weight


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


def test_under_autocast_the_direct_conv_runs() -> None:
    """In a bf16 network the transforms would lose precision: autocast means the direct conv."""
    conv = nn.Conv2d(4, 4, 3, padding=1).requires_grad_(False)
    layer = WinogradConv2d.from_conv(conv)
    layer.winograd = True
    x = torch.randn(1, 4, 8, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert layer(x).dtype == torch.bfloat16 == conv(x).dtype


def small_vgg() -> VGG:
    torch.manual_seed(0)
    return VGG("vgg11", pooling="avg").requires_grad_(False)


def test_choice_follows_the_clock_layer_by_layer() -> None:
    """A fake clock that makes Winograd fast for every second timed layer: those are chosen,
    and the others stay direct; nothing past the deepest wanted layer is touched."""
    model = small_vgg()
    names = prepare_winograd(model)
    assert names[0] == "conv1_1" and all(isinstance(getattr(model, n), nn.Conv2d) for n in names)
    ticks = itertools.count()
    state = {"now": 0.0}

    def clock() -> float:  # direct passes take 1 s; Winograd 0.5 s or 2 s by layer parity
        tick = next(ticks)
        if tick % 2 == 0:
            return state["now"]
        layer = tick // 8  # 2 passes × (start, stop) × 2 algorithms per layer
        algorithm = (tick // 4) % 2
        fast = layer % 2 == 0
        state["now"] += 1.0 if algorithm == 0 else (0.5 if fast else 2.0)
        return state["now"]

    example = torch.zeros(1, 3, 16, 16).contiguous(memory_format=torch.channels_last)
    timings = choose_convolutions(model, example, ["relu3_1"], "measure", clock)
    assert [t.name for t in timings] == ["conv2_1", "conv3_1"]  # conv1_1 has 3 channels
    assert [t.chosen for t in timings] == ["winograd", "direct"]
    assert model.conv2_1.winograd and not model.conv3_1.winograd
    assert not model.conv1_1.winograd and not model.conv3_2.winograd


def test_explicit_choices_and_where_auto_does_not_measure() -> None:
    model = small_vgg()
    prepare_winograd(model)
    example = torch.zeros(1, 3, 16, 16)
    assert choose_convolutions(model, example, ["relu2_1"], "winograd") == []
    assert model.conv1_1.winograd and model.conv2_1.winograd and not model.conv3_1.winograd
    choose_convolutions(model, example, ["relu5_2"], "direct")
    assert not any(getattr(model, n).winograd for n in ("conv1_1", "conv2_1", "conv5_2"))
    choose_convolutions(model, example.bfloat16(), ["relu5_2"], "winograd")
    # auto and measure in a lower precision: nothing timed, every conv direct
    for choice in ("auto", "measure"):
        assert choose_convolutions(model, example.bfloat16(), ["relu5_2"], choice) == []
        assert not any(getattr(model, n).winograd for n in ("conv1_1", "conv3_2", "conv5_2"))


@pytest.mark.parametrize(
    ("avx512", "side", "expected"),
    [
        (True, 256, ["conv4_2"]),  # conv5_x at 8×8 = 256 positions: too small
        (True, 512, ["conv4_2", "conv5_1", "conv5_2"]),
        (True, 1024, ["conv5_1", "conv5_2"]),  # conv4_x at 128² positions: too large
        (False, 64, ["conv2_1", "conv3_1", "conv3_2"]),  # conv4_x at 8×8 = 64 positions
        (False, 256, ["conv2_1", "conv3_1", "conv3_2", "conv4_1", "conv4_2", "conv5_1", "conv5_2"]),
        (False, 1024, ["conv4_1", "conv4_2", "conv5_1", "conv5_2"]),  # conv3_x at 256²
    ],
)
def test_auto_rule_by_width_size_and_isa(
    monkeypatch: pytest.MonkeyPatch, avx512: bool, side: int, expected: list[str]
) -> None:
    """auto: by the ISA the direct kernels use, Winograd only for wide enough layers whose
    feature map (VGG-11 halves it at each pooling) is within the measured bounds; the same choice
    every run (no timing), so a seed reproduces the image."""
    import normstyle.runtime.convolutions as convolutions

    monkeypatch.setattr(convolutions, "direct_convolutions_use_avx512", lambda: avx512)
    model = small_vgg()
    prepare_winograd(model)
    example = torch.zeros(1, 3, side, side)
    assert choose_convolutions(model, example, ["relu5_2"], "auto") == []
    names = ["conv1_1", "conv2_1", "conv3_1", "conv3_2", "conv4_1", "conv4_2", "conv5_1", "conv5_2"]
    assert [n for n in names if getattr(model, n).winograd] == expected


@pytest.mark.parametrize("ceil_mode", [False, True])
def test_input_positions_match_the_shapes_the_layers_produce(ceil_mode: bool) -> None:
    """The rule's per-layer sizes, from shape formulas alone, against running the layers."""
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
        positions = input_positions(layers, (1, 3, height, width))
        x = torch.zeros(1, 3, height, width)
        for name, module in layers:
            assert positions[name] == x.shape[2] * x.shape[3], (name, height, width)
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
