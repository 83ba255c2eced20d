"""Artist controls (Gatys et al. 2017): guided Grams and masks (§4), luminance-only transfer and
colour matching (§5), style layers per style image (§6) — each against an independent
computation: the paper's formulas written out in float64, torch's pooling, plain statistics."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nets import STYLIZE_BUILTINS, random_relu_net
from normstyle.errors import InputError, OptionError
from normstyle.io.resize import load_rgb
from normstyle.io.tensors import image_to_rgb
from normstyle.nets import VGG
from normstyle.nets.preprocessing import CAFFE, TORCHVISION
from normstyle.style.color import (
    grey_projection,
    luminance_image,
    match_color_histogram,
    matched_luminance,
    rgb_to_yiq,
)
from normstyle.style.guidance import decoded_mask, layer_position_weights, resized_mask
from normstyle.style.losses import gram_matrix, guided_gram_matrix, style_layer_loss
from normstyle.style.options import StyleOptions
from normstyle.style.targets import build_loss
from normstyle.style.transfer import run

TINY = {"content_layers": {"relu3_1": 1.0}, "style_layers": {"relu1_1": 0.5, "relu2_1": 0.5}}


def _small_vgg() -> VGG:
    """VGG-11 with random weights, float64: fast at 32 px, and a real VGG chain."""
    generator = torch.Generator().manual_seed(0)
    model = VGG("vgg11", pooling="avg").double()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.Conv2d):
                module.weight.normal_(0, 0.2, generator=generator)
                module.bias.uniform_(0, 0.05, generator=generator)
    return model.eval().requires_grad_(False)


def _images(seed: int, size: tuple[int, int] = (32, 32), count: int = 3) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.rand(1, 3, *size, generator=generator, dtype=torch.float64) for _ in range(count)]


# --- §4: guided Gram matrices ---------------------------------------------------------------


def test_the_guided_gram_of_a_mask_of_ones_is_the_plain_gram() -> None:
    features = torch.rand(2, 5, 4, 3, dtype=torch.float64)
    ones = torch.ones(1, 1, 4, 3, dtype=torch.float64)
    torch.testing.assert_close(guided_gram_matrix(features, ones), gram_matrix(features))
    target = gram_matrix(torch.rand(1, 5, 4, 3, dtype=torch.float64))[0]
    torch.testing.assert_close(
        style_layer_loss(features, target, ones), style_layer_loss(features, target)
    )


@pytest.mark.parametrize("channels_last", [False, True])
def test_guided_style_loss_and_gradient_match_the_paper_written_out(channels_last: bool) -> None:
    """E = 1/(4N²) Σ (G_T/m − A/m)², G_T = Σ_k T_k² f_k f_kᵀ, m = Σ T², against autograd."""
    torch.manual_seed(1)
    f = torch.rand(2, 5, 4, 3, dtype=torch.float64)
    if channels_last:
        f = f.contiguous(memory_format=torch.channels_last)
    f.requires_grad_(True)
    guide = torch.rand(1, 1, 4, 3, dtype=torch.float64)
    weights = guide.square()
    a = torch.rand(5, 5, dtype=torch.float64)
    a = a + a.T

    def plain(f: torch.Tensor) -> torch.Tensor:
        total = 0.0
        for b in range(2):
            flat = f[b].reshape(5, 12) * guide.reshape(1, 12)  # T ∘ F
            m = float(weights.sum())
            total = total + ((flat @ flat.T / m - a / m) ** 2).sum() / (4 * 25)
        return total

    ours = style_layer_loss(f, a, weights)
    expected = plain(f)
    torch.testing.assert_close(ours, expected, rtol=1e-12, atol=0)
    (got,) = torch.autograd.grad(2.0 * ours, f)
    (want,) = torch.autograd.grad(2.0 * expected, f)
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-14)


def test_masks_follow_the_networks_pooling_windows() -> None:
    """Each layer's guidance is the mask averaged over the pooling cells above it, whatever the
    pooling kind; the weights are its square."""
    net = random_relu_net(pooling="max").double()
    mask = torch.zeros(1, 1, 16, 16, dtype=torch.float64)
    mask[..., :, :5] = 1.0
    mask[..., 3, 7] = 0.5
    got = layer_position_weights(net, mask, ["relu1", "relu2", "pool2", "relu3", "pool3"])
    by_hand = mask[0, 0].numpy()
    half = by_hand.reshape(8, 2, 8, 2).mean(axis=(1, 3))
    quarter = half.reshape(4, 2, 4, 2).mean(axis=(1, 3))
    expected = {"relu1": by_hand, "relu2": by_hand, "pool2": half, "relu3": half, "pool3": quarter}
    for name, value in expected.items():
        np.testing.assert_allclose(got[name][0, 0].numpy(), value**2, rtol=0, atol=1e-15)


def _tiny_loss(
    content: torch.Tensor,
    styles: list[torch.Tensor],
    masks: list[torch.Tensor] | None = None,
    **options: object,
) -> object:
    net = _small_vgg()
    opts = StyleOptions(**{**TINY, **options})
    blend = [1.0 / len(styles)] * len(styles)
    return net, build_loss(net, CAFFE, content, styles, blend, opts, masks=masks)


def _total(net: torch.nn.Module, loss: object, x: torch.Tensor) -> torch.Tensor:
    return loss(net(x, loss.layers), x).total  # type: ignore[attr-defined,operator]


def test_one_style_under_a_mask_of_ones_is_the_plain_loss() -> None:
    content, style, image = _images(0)
    ones = torch.ones(1, 1, 32, 32)
    net, plain = _tiny_loss(content, [style])
    _, guided = _tiny_loss(content, [style], masks=[ones])
    x = CAFFE.from_rgb(image).requires_grad_(True)
    a, b = _total(net, plain, x), _total(net, guided, x)
    torch.testing.assert_close(a, b, rtol=1e-10, atol=0)
    (ga,) = torch.autograd.grad(a, x)
    x2 = x.detach().requires_grad_(True)
    (gb,) = torch.autograd.grad(_total(net, guided, x2), x2)
    torch.testing.assert_close(ga, gb, rtol=1e-9, atol=1e-12)


def test_a_region_outside_every_mask_gets_no_style_gradient_beyond_the_receptive_field() -> None:
    """Style only (α = 0) on relu1_1 and relu2_1, the mask on the left third: pixels farther
    right than relu2_1's receptive field (conv, pool, conv: 8 px) from the mask's edge do not
    move the loss at all; pixels inside do."""
    content, style, image = _images(1, size=(32, 48))
    mask = torch.zeros(1, 1, 32, 48)
    mask[..., :16] = 1.0
    net, loss = _tiny_loss(content, [style], masks=[mask], content_weight=0.0)
    x = CAFFE.from_rgb(image).requires_grad_(True)
    (grad,) = torch.autograd.grad(_total(net, loss, x), x)
    assert float(grad[..., 16 + 8 :].abs().max()) == 0.0
    assert float(grad[..., :16].abs().min(dim=-1).values.mean()) > 0.0


def test_two_regions_each_pull_toward_their_own_style() -> None:
    """With two masks, each region's term is its own style's guided loss: the total equals the
    sum of two single-region losses computed separately."""
    content, warm, cool = _images(2)
    left = torch.zeros(1, 1, 32, 32)
    left[..., :16] = 1.0
    right = 1.0 - left
    net, both = _tiny_loss(content, [warm, cool], masks=[left, right], content_weight=0.0)
    _, only_left = _tiny_loss(content, [warm], masks=[left], content_weight=0.0)
    _, only_right = _tiny_loss(content, [cool], masks=[right], content_weight=0.0)
    x = CAFFE.from_rgb(_images(3, count=1)[0])
    torch.testing.assert_close(
        _total(net, both, x),
        _total(net, only_left, x) + _total(net, only_right, x),
        rtol=1e-10,
        atol=0,
    )


def test_masks_read_from_a_file_a_pil_image_an_array_and_a_tensor_agree(tmp_path: Path) -> None:
    values = np.zeros((6, 9), dtype=np.uint8)
    values[:, :4] = 255
    values[2, 6] = 128
    path = tmp_path / "mask.png"
    Image.fromarray(values).save(path)
    expected = values.astype(np.float32) / 255
    for source in (
        path,
        str(path),
        Image.open(path),
        Image.fromarray(values).convert("RGB"),
        values,
        expected,
        torch.from_numpy(expected),
    ):
        np.testing.assert_allclose(decoded_mask(source), expected, atol=1e-6)
    resized = resized_mask(expected, (18, 12))
    assert resized.shape == (1, 1, 12, 18)


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"masks": ("white",)}, OptionError, "1 masks for 2 style images"),
        ({"masks": ("white", "white", "white")}, OptionError, "3 masks for 2 style images"),
        ({"masks": ("white", "black")}, InputError, "mask 2 is empty"),
        ({"masks": ("white", "missing")}, InputError, "mask 2: "),
        ({"style_masks": ("black", "white")}, InputError, "style mask 1 is empty"),
        ({"style_layers": [{"relu1_1": 1.0}] * 3}, OptionError, "3 sets of style layers"),
    ],
)
def test_bad_masks_and_layer_sets_are_refused_in_one_line(
    tmp_path: Path, options: dict, error: type, message: str
) -> None:
    white = np.full((8, 8), 255, dtype=np.uint8)
    sources = {"white": white, "black": np.zeros((8, 8), np.uint8), "missing": tmp_path / "no.png"}
    for key in ("masks", "style_masks"):
        if key in options:
            options[key] = tuple(sources[name] for name in options[key])
    with pytest.raises(error, match=message) as raised:
        run("builtin:grace_hopper", ["builtin:swirls", "builtin:swirls"], StyleOptions(**options))
    assert "\n" not in str(raised.value)


def test_the_command_line_refuses_a_wrong_mask_count_in_one_line(tmp_path: Path) -> None:
    mask = tmp_path / "m.png"
    Image.fromarray(np.full((8, 8), 255, np.uint8)).save(mask)
    done = subprocess.run(
        [*STYLIZE_BUILTINS, "--masks", str(mask), str(mask), "-o", str(tmp_path / "o.png")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "2 masks for 1 style image" in done.stderr
    assert not (tmp_path / "o.png").exists()


# --- §6: style layers per style image -------------------------------------------------------


def test_style_layers_per_style_add_up_to_each_styles_loss_on_its_own_layers() -> None:
    content, fine, coarse = _images(4)
    sets = [{"relu1_1": 0.3}, {"relu2_1": 0.2, "relu3_1": 0.5}]
    net, mixed = _tiny_loss(content, [fine, coarse], style_layers=sets, content_weight=0.0)
    _, fine_only = _tiny_loss(content, [fine], style_layers=sets[0], content_weight=0.0)
    _, coarse_only = _tiny_loss(content, [coarse], style_layers=sets[1], content_weight=0.0)
    x = CAFFE.from_rgb(_images(5, count=1)[0])
    torch.testing.assert_close(
        _total(net, mixed, x),
        _total(net, fine_only, x) + _total(net, coarse_only, x),
        rtol=1e-10,
        atol=0,
    )


# --- §5: colour control ---------------------------------------------------------------------


def test_matched_luminance_has_the_contents_mean_and_variance() -> None:
    style, content = _images(6, count=2)
    content = content * 0.5 + 0.2
    matched = matched_luminance(style, content)
    assert torch.equal(matched[:, 0], matched[:, 1]) and torch.equal(matched[:, 0], matched[:, 2])
    y = matched[:, 0].flatten()
    # Y of the content written out: BT.601 luma.
    content_y = (0.299 * content[:, 0] + 0.587 * content[:, 1] + 0.114 * content[:, 2]).flatten()
    torch.testing.assert_close(y.mean(), content_y.mean(), rtol=1e-12, atol=0)
    torch.testing.assert_close(y.std(), content_y.std(), rtol=1e-12, atol=0)


@pytest.mark.parametrize("prep", [CAFFE, TORCHVISION], ids=["caffe", "torchvision"])
def test_grey_projection_keeps_grey_images_grey(prep: object) -> None:
    project = grey_projection(prep.scale, prep.std)  # type: ignore[attr-defined]
    grey = prep.from_rgb(luminance_image(_images(7, count=1)[0]))  # type: ignore[attr-defined]
    grad = torch.randn_like(grey)
    projected = project(grad)
    torch.testing.assert_close(project(projected), projected)  # a projection
    moved = prep.to_rgb(grey - 0.01 * projected)  # type: ignore[attr-defined]
    torch.testing.assert_close(moved[:, 0], moved[:, 1], rtol=0, atol=1e-12)
    torch.testing.assert_close(moved[:, 0], moved[:, 2], rtol=0, atol=1e-12)
    # Orthogonal: what it removes is orthogonal to what it keeps.
    assert abs(float(((grad - projected) * projected).sum())) < 1e-9 * float(grad.square().sum())


def test_histogram_matching_gives_the_contents_colour_mean_and_covariance() -> None:
    generator = torch.Generator().manual_seed(8)
    style = torch.rand(1, 3, 40, 40, generator=generator) * 0.3 + 0.35
    content = torch.rand(1, 3, 40, 40, generator=generator) * 0.2 + 0.4
    content[:, 0] = content[:, 0] * 0.5 + content[:, 1] * 0.5  # correlated channels
    matched = match_color_histogram(style, content)
    assert float(matched.min()) > 0 and float(matched.max()) < 1  # nothing clamped
    got, want = matched.reshape(3, -1).double(), content.reshape(3, -1).double()
    torch.testing.assert_close(got.mean(1), want.mean(1), atol=1e-6, rtol=0)
    torch.testing.assert_close(torch.cov(got), torch.cov(want), atol=1e-6, rtol=1e-3)


@pytest.mark.vgg
def test_luminance_only_transfer_keeps_the_chrominance_and_restyles_the_luminance() -> None:
    options = StyleOptions(
        long_side=64, iterations=40, seed=0, preserve_colors="luminance", progress=False
    )
    output = image_to_rgb(run("builtin:grace_hopper", "builtin:swirls", options).image)
    content = load_rgb("builtin:grace_hopper", 64)
    got, want = rgb_to_yiq(output), rgb_to_yiq(content)
    assert float((got[:, 1:] - want[:, 1:]).abs().mean()) < 0.01  # 8-bit rounding, some clamping
    assert float((got[:, :1] - want[:, :1]).abs().mean()) > 0.03


@pytest.mark.vgg
def test_swapping_the_masks_of_a_warm_and_a_cool_style_swaps_the_halves_colours() -> None:
    """The issue's bar at a smaller size: a red and a blue style on the left and right halves,
    then swapped; the halves' R − B difference must swing."""
    red = torch.zeros(3, 48, 48)
    red[0] = 0.9
    red[1, :, ::4] = 0.4  # some texture for the Gram beyond a flat colour
    blue = red[[2, 1, 0]]
    left = np.zeros((48, 64), np.float32)
    left[:, :32] = 1.0

    def warm_minus_cool(masks: tuple[np.ndarray, np.ndarray]) -> float:
        options = StyleOptions(long_side=64, iterations=40, seed=0, masks=masks, progress=False)
        image = image_to_rgb(run("builtin:grace_hopper", [red, blue], options).image)
        difference = image[0, 0] - image[0, 2]
        half = image.shape[3] // 2
        return float(difference[:, :half].mean() - difference[:, half:].mean())

    swing = warm_minus_cool((left, 1 - left)) - warm_minus_cool((1 - left, left))
    assert swing > 0.08


def test_vgg_masks_are_per_layer_at_the_feature_maps_size() -> None:
    model = VGG("vgg19", pooling="avg")
    names = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"]
    weights = layer_position_weights(model, torch.ones(1, 1, 67, 50), names)
    x = torch.zeros(1, 3, 67, 50)
    with torch.no_grad():
        features = model(x, names)
    for name in names:
        assert weights[name].shape[2:] == features[name].shape[2:]


# --- found in review ------------------------------------------------------------------------


def test_a_white_shape_on_a_transparent_background_selects_the_shape(tmp_path: Path) -> None:
    rgba = np.zeros((6, 8, 4), dtype=np.uint8)
    rgba[:, :3] = (255, 255, 255, 255)  # opaque white on the left, transparent elsewhere
    path = tmp_path / "mask.png"
    Image.fromarray(rgba, "RGBA").save(path)
    expected = np.zeros((6, 8), np.float32)
    expected[:, :3] = 1.0
    for source in (path, Image.open(path)):
        np.testing.assert_allclose(decoded_mask(source), expected, atol=1e-6)


def test_sixteen_bit_and_float_masks_read_alike_from_a_file_and_as_pil_images(
    tmp_path: Path,
) -> None:
    values = np.full((4, 5), 32768, dtype=np.uint16)
    values[:, :2] = 0
    path = tmp_path / "m16.png"
    Image.fromarray(values).save(path)
    from_file = decoded_mask(path)
    np.testing.assert_allclose(decoded_mask(Image.open(path)), from_file, atol=1e-6)
    assert abs(float(from_file[0, 4]) - 0.5) < 0.01 and float(from_file[0, 0]) == 0.0
    floats = Image.fromarray(np.full((4, 5), 0.5, dtype=np.float32), mode="F")
    assert abs(float(decoded_mask(floats).mean()) - 0.5) < 0.01


def test_odd_mask_values_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"\(H, W\), \(1, H, W\) or \(3, H, W\)"):
        decoded_mask(torch.rand(2, 5, 5))
    with pytest.raises(OptionError, match="masks must be a list"):
        StyleOptions(masks=tmp_path / "m.png")  # type: ignore[arg-type]
    with pytest.raises(OptionError, match="--paper uses the paper's style layers"):
        StyleOptions(paper=True, style_layers=[{"relu1_1": 1.0}, {"relu2_1": 1.0}])


def test_style_layers_repeat_per_style_and_never_swallow_a_style_image(tmp_path: Path) -> None:
    from normstyle.cli import make_parser

    parser = make_parser()
    once = parser.parse_args(
        ["stylize", "c.png", "--style-layers", "relu1_1", "s.png", "-o", "o.png"]
    )
    assert once.styles == ["s.png"] and once.style_layers == [{"relu1_1": 1.0}]
    argv = ["stylize", "c.png", "a.png", "b.png", "--style-layers", "relu1_1,relu2_1"]
    twice = parser.parse_args([*argv, "--style-layers", "relu3_1", "-o", "o.png"])
    assert twice.styles == ["a.png", "b.png"]
    assert twice.style_layers == [{"relu1_1": 0.5, "relu2_1": 0.5}, {"relu3_1": 1.0}]


def test_adam_steps_stay_grey_under_the_grey_projection() -> None:
    """Adam rescales each value of its step: the step itself is projected, so an image that
    starts grey stays grey under torchvision's per-channel scaling too."""
    from normstyle.style.optimizer import Adam, minimize

    project = grey_projection(TORCHVISION.scale, TORCHVISION.std)
    start = TORCHVISION.from_rgb(luminance_image(_images(9, count=1)[0].float()))
    target = torch.randn_like(start)

    def objective(x: torch.Tensor, need_grad: bool):
        value = ((x - target) ** 4).sum()
        grad = project(4 * (x - target) ** 3) if need_grad else None
        return value, grad, None

    result = minimize(
        objective, start, 60, Adam(pixel_unit=0.01, learning_rate=5.0), project=project
    )
    rgb = TORCHVISION.to_rgb(result.x)
    assert float((rgb[:, 0] - rgb[:, 1]).abs().max()) < 1e-5
    assert float((rgb[:, 0] - rgb[:, 2]).abs().max()) < 1e-5
    assert result.loss < float(objective(start, False)[0])
