"""Images in tiles (style/bands.py, style/banded.py, runtime/memory.py): the tiled loss, gradient
and targets against the whole image's, in float64 on a small VGG and in fp32 on the real VGG-19;
the geometry against the receptive field worked out by hand; the memory plan's choices."""

from __future__ import annotations

import pytest
import torch

from normstyle.errors import OptionError
from normstyle.nets import VGG
from normstyle.nets.preprocessing import CAFFE
from normstyle.registry import for_stylization
from normstyle.runtime.memory import GB, parse_size, plan_level_memory
from normstyle.runtime.precision import Runtime
from normstyle.style.banded import banded_backward, banded_targets
from normstyle.style.bands import band_layout, chain_geometry, feature_sizes, network_geometry
from normstyle.style.options import StyleOptions
from normstyle.style.precision import GradientScale, backward_to_pixels
from normstyle.style.targets import build_loss
from normstyle.style.transfer import run

FP32 = Runtime(torch.device("cpu"), "fp32")


def _small_vgg() -> VGG:
    generator = torch.Generator().manual_seed(0)
    model = VGG("vgg11", pooling="avg").double()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Conv2d):
                module.weight.normal_(0, 0.2, generator=generator)
                module.bias.uniform_(0, 0.05, generator=generator)
    return model.eval().requires_grad_(False)


def test_vgg19_geometry_is_the_receptive_field_worked_out_by_hand() -> None:
    """Up to relu5_1: 4 poolings (stride 16). A row's features reach up by one row per 3×3 conv
    times the stride so far — 2·1 + 2·2 + 4·4 + 4·8 + 1·16 = 70 — and down by that plus each
    2×2 pooling's extra row — 1 + 2 + 4 + 8 = 15, so 85: a halo of 96 rows (a multiple of 16)."""
    geometry = network_geometry("vgg19", "avg", ["relu1_1", "relu3_1", "relu5_1"])
    assert geometry.stride == 16
    assert geometry.halo == 96
    assert geometry.strides == {"relu1_1": 1, "relu3_1": 4, "relu5_1": 16}
    # conv1_1, conv1_2, pool1, conv2_1: up 1 + 1 + 2 = 4, down 1 + 1 + 1 + 2 = 5; halo 6.
    shallow = network_geometry("vgg19", "avg", ["relu2_1"])
    assert (shallow.stride, shallow.halo) == (2, 6)


def test_layout_tiles_cover_the_image_once_on_the_pooling_grid() -> None:
    geometry = network_geometry("vgg19", "avg", ["relu5_1"])
    layout = band_layout(300, 70, geometry, 250, 100)
    covered = torch.zeros(300, 250, dtype=torch.int64)
    for band in layout.bands:
        covered[band.start : band.stop, band.left : band.right] += 1
        for edge in (band.start, band.left, band.input_start, band.input_left):
            assert edge % 16 == 0
        assert band.input_start == max(0, band.start - 96)
        assert band.input_right == min(250, band.right + 96)
    assert bool((covered == 1).all())


def _loss_and_grad(model, loss, x, runtime, layout=None):
    if layout is None:
        leaf = x.detach().clone().requires_grad_(True)
        terms = backward_to_pixels(model, loss, leaf, runtime, GradientScale())
        return terms.total.detach(), leaf.grad
    sizes = feature_sizes(model, loss.layers, *x.shape[2:])
    terms, grad = banded_backward(model, loss, x, runtime, layout, sizes)
    return terms.total, grad


@pytest.mark.parametrize(("rows", "columns"), [(16, 200), (32, 16), (48, 48)])
def test_tiled_loss_and_gradient_equal_the_whole_images_in_float64(rows, columns) -> None:
    model = _small_vgg()
    generator = torch.Generator().manual_seed(1)
    content, style, image = (
        torch.rand(1, 3, *size, generator=generator, dtype=torch.float64)
        for size in ((72, 88), (60, 50), (72, 88))
    )
    mask = torch.zeros(1, 1, 72, 88)
    mask[..., 20:, :40] = 1.0
    # Up to relu3_1 (stride 4, halo 12) to keep float64 quick; the fp32 test below goes to relu5_1.
    options = StyleOptions(
        content_layers={"relu3_1": 1.0},
        style_layers={"relu1_1": 0.5, "relu2_1": 0.3, "relu3_1": 0.2},
        tv_weight=0.5,
    )
    for masks in (None, [mask, 1 - mask]):
        styles = [style] if masks is None else [style, style.flip(-1)]
        loss = build_loss(
            model, CAFFE, content, styles, [1 / len(styles)] * len(styles), options, masks=masks
        )
        x = CAFFE.from_rgb(image)
        geometry = chain_geometry(model, loss.layers)
        layout = band_layout(72, rows, geometry, 88, columns)
        assert len(layout.bands) > 1
        whole_loss, whole_grad = _loss_and_grad(model, loss, x, FP32)
        tiled_loss, tiled_grad = _loss_and_grad(model, loss, x, FP32, layout)
        assert abs(float(tiled_loss / whole_loss) - 1) <= 1e-6
        assert float((tiled_grad - whole_grad).norm() / whole_grad.norm()) <= 1e-6


def test_tiled_targets_equal_the_whole_images_in_float64() -> None:
    model = _small_vgg()
    generator = torch.Generator().manual_seed(2)
    image = CAFFE.from_rgb(torch.rand(1, 3, 80, 72, generator=generator, dtype=torch.float64))
    weights = torch.rand(1, 1, 20, 18, generator=generator, dtype=torch.float64)  # at relu3_1
    kept, grams = banded_targets(
        model, image, FP32, (32, 32), ["relu4_1"], {"relu1_1": None, "relu3_1": weights}
    )
    with torch.no_grad():
        whole = model(image, ["relu1_1", "relu3_1", "relu4_1"])
    # Equal up to the order of float64 sums (the convolutions of a smaller input add in another
    # order: ~1e-11 relative here).
    torch.testing.assert_close(kept["relu4_1"], whole["relu4_1"], rtol=1e-9, atol=1e-9)
    rows = whole["relu1_1"].flatten(2)
    torch.testing.assert_close(grams["relu1_1"], rows @ rows.mT, rtol=1e-9, atol=1e-9)
    guided = (whole["relu3_1"] * weights.sqrt()).flatten(2)
    torch.testing.assert_close(grams["relu3_1"], guided @ guided.mT, rtol=1e-9, atol=1e-9)


@pytest.mark.vgg
def test_tiled_vgg19_loss_and_gradient_equal_the_whole_images_in_fp32() -> None:
    weights = for_stylization("vgg19-caffe", True)
    model = weights.build(pooling="avg")
    generator = torch.Generator().manual_seed(3)
    content, style, image = (
        torch.rand(1, 3, *size, generator=generator) for size in ((96, 112), (80, 80), (96, 112))
    )
    options = StyleOptions()
    loss = build_loss(model, CAFFE, content, [style], [1.0], options, FP32)
    tiled_loss_fn = build_loss(model, CAFFE, content, [style], [1.0], options, FP32, tile=(32, 48))
    for name, value in loss.content_targets.items():  # targets computed in tiles
        torch.testing.assert_close(tiled_loss_fn.content_targets[name], value, rtol=1e-4, atol=1e-4)
    for name, value in loss.style_grams.items():
        torch.testing.assert_close(tiled_loss_fn.style_grams[name], value, rtol=1e-4, atol=1e-2)
    x = CAFFE.from_rgb(image)
    layout = band_layout(96, 32, chain_geometry(model, loss.layers), 112, 48)
    whole_loss, whole_grad = _loss_and_grad(model, loss, x, FP32)
    tiled_loss, tiled_grad = _loss_and_grad(model, tiled_loss_fn, x, FP32, layout)
    assert abs(float(tiled_loss / whole_loss) - 1) <= 1e-4
    assert float((tiled_grad - whole_grad).norm() / whole_grad.norm()) <= 1e-4


@pytest.mark.vgg
def test_a_tiled_run_takes_the_same_steps_as_a_whole_one() -> None:
    common = {"long_side": 96, "iterations": 4, "seed": 0, "progress": False}
    common |= {"precision": "fp32", "convolution": "direct"}
    whole = run("builtin:grace_hopper", "builtin:swirls", StyleOptions(**common))
    tiled = run("builtin:grace_hopper", "builtin:swirls", StyleOptions(tile=32, **common))
    assert tiled.tiles is not None and whole.tiles is None
    # The first step from the same start and gradient lands on the same loss; later ones drift
    # apart by fp32 rounding, which L-BFGS amplifies a little at every step.
    assert abs(whole.losses[0] / tiled.losses[0] - 1) <= 1e-5
    for a, b in zip(whole.losses, tiled.losses):
        assert abs(a / b - 1) <= 1e-3


def test_the_plan_prefers_the_whole_image_then_history_then_bands_then_tiles() -> None:
    def plan(width, height, history, budget, tile=None):
        return plan_level_memory(
            width, height, width * height, history, "fp32", budget, 16, 96, tile
        )

    small = plan(512, 384, 100, 6 * GB)
    assert (small.history, small.tile) == (100, None)
    shorter = plan(1024, 768, 100, 6 * GB)  # 100 pairs would need ~7 GB
    assert shorter.tile is None and 10 <= shorter.history < 100 and shorter.needed <= 6 * GB
    bands = plan(2048, 1536, 2, 6 * GB)
    assert bands.tile is not None and bands.tile[1] == 2048 and bands.tile[0] % 16 == 0
    assert bands.needed <= 6 * GB
    tiles = plan(8192, 6144, 2, 20 * GB)  # rows too wide for bands twice the halo
    assert tiles.tile is not None and tiles.tile[1] < 8192 and tiles.needed <= 20 * GB
    forced = plan(512, 384, 100, 6 * GB, tile=128)
    assert forced.tile == (128, 128)
    with pytest.raises(OptionError, match="even in the smallest tiles") as refused:
        plan(100_000, 75_000, 2, 6 * GB)
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize(
    ("text", "value"),
    [("8G", 8 * 2**30), ("512MiB", 512 * 2**20), ("6.5GB", 6.5 * 2**30), (1e9, 1e9)],
)
def test_memory_sizes_read_as_a_person_writes_them(text, value) -> None:
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["", "8X", "-1G", "0", "inf", "nan G", "1e999"])
def test_bad_memory_sizes_are_one_line_errors(text) -> None:
    with pytest.raises(OptionError) as refused:
        StyleOptions(max_memory=text)
    assert "\n" not in str(refused.value)
