"""The start image: the content recoloured to the style's colours (the default). The colour
moments and the recolouring are checked against plain statistics of the pixels computed here in
float64 (numpy's mean and covariance of the pooled, masked or selected pixels); the masked and
default starts are then checked against those recolourings, region by region."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from normstyle.nets.preprocessing import CAFFE
from normstyle.style.color import color_moments, mixture_moments, recolored
from normstyle.style.initial import initial_image, recolored_content
from normstyle.style.options import StyleOptions


def _image(seed: int, low: float, spread: float, size: tuple[int, int] = (24, 30)) -> torch.Tensor:
    """A random RGB image (1, 3, H, W) in [low, low + spread], its channels correlated."""
    generator = torch.Generator().manual_seed(seed)
    image = torch.rand(1, 3, *size, generator=generator, dtype=torch.float64) * spread + low
    image[:, 1] = 0.6 * image[:, 1] + 0.4 * image[:, 0]
    return image


def _pixels(image: torch.Tensor) -> np.ndarray:
    return image[0].reshape(3, -1).numpy()


def _moments(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """numpy's mean and population covariance of pixels (3, N)."""
    return pixels.mean(axis=1), np.cov(pixels, bias=True)


def test_the_colour_moments_are_the_pixels_mean_and_covariance_and_a_mask_selects() -> None:
    image = _image(0, 0.1, 0.8)
    mean, cov = color_moments(image)
    want_mean, want_cov = _moments(_pixels(image))
    np.testing.assert_allclose(mean[:, 0].numpy(), want_mean, rtol=1e-12)
    np.testing.assert_allclose(cov.numpy(), want_cov, rtol=1e-10, atol=1e-15)
    # A 0/1 weight: the moments of the selected pixels alone.
    weight = torch.zeros(1, 1, 24, 30)
    weight[..., 5:17, 3:11] = 1.0
    mean, cov = color_moments(image, weight)
    selected = image[0, :, 5:17, 3:11].reshape(3, -1).numpy()
    want_mean, want_cov = _moments(selected)
    np.testing.assert_allclose(mean[:, 0].numpy(), want_mean, rtol=1e-12)
    np.testing.assert_allclose(cov.numpy(), want_cov, rtol=1e-10, atol=1e-15)
    with pytest.raises(ValueError, match="no pixel"):
        color_moments(image, torch.zeros(1, 1, 24, 30))


def test_the_mixture_of_two_images_moments_is_their_pooled_pixels() -> None:
    first, second = _image(1, 0.0, 0.5), _image(2, 0.4, 0.6, size=(12, 30))
    # Blend weights in proportion to the pixel counts: the pooled pixels' moments.
    n1, n2 = 24 * 30, 12 * 30
    mean, cov = mixture_moments(
        [color_moments(first), color_moments(second)], [n1 / (n1 + n2), n2 / (n1 + n2)]
    )
    want_mean, want_cov = _moments(np.concatenate([_pixels(first), _pixels(second)], axis=1))
    np.testing.assert_allclose(mean[:, 0].numpy(), want_mean, rtol=1e-12)
    np.testing.assert_allclose(cov.numpy(), want_cov, rtol=1e-10, atol=1e-15)


def test_recolouring_gives_the_target_mean_and_covariance() -> None:
    photo, painting = _image(3, 0.35, 0.3), _image(4, 0.2, 0.6)
    out = recolored(photo, *color_moments(painting))
    assert float(out.min()) > 0 and float(out.max()) < 1  # nothing clamped
    got_mean, got_cov = _moments(_pixels(out))
    want_mean, want_cov = _moments(_pixels(painting))
    np.testing.assert_allclose(got_mean, want_mean, atol=1e-12)
    np.testing.assert_allclose(got_cov, want_cov, rtol=0, atol=1e-5)  # the 1e-6 ridge
    # A grey photo onto a darker copy of itself: the map is that scaling (the ridge keeps the
    # covariance of a grey image, singular, invertible).
    grey = _image(5, 0.3, 0.4)
    grey[:, 1:] = grey[:, :1]
    dark = grey * 0.5
    out = recolored(grey, *color_moments(dark))
    np.testing.assert_allclose(out.numpy(), dark.numpy(), atol=2e-3)


def test_with_masks_each_region_takes_its_own_styles_colours() -> None:
    photo = _image(6, 0.3, 0.4)
    warm, cool = _image(7, 0.2, 0.3), _image(8, 0.6, 0.3)
    left = torch.zeros(1, 1, 24, 30)
    left[..., :15] = 1.0
    right = 1 - left
    right[..., 25:] = 0.0  # the last five columns: no mask, the photo's own colours
    start = recolored_content(photo, [warm, cool], [0.5, 0.5], masks=[left, right])
    torch.testing.assert_close(start[..., :15], recolored(photo, *color_moments(warm))[..., :15])
    torch.testing.assert_close(
        start[..., 15:25], recolored(photo, *color_moments(cool))[..., 15:25]
    )
    torch.testing.assert_close(start[..., 25:], photo[..., 25:])
    # Overlapping white masks share the pixel: each recolouring at half weight.
    both = recolored_content(photo, [warm, cool], [0.5, 0.5], masks=[left, left])
    half = 0.5 * (recolored(photo, *color_moments(warm)) + recolored(photo, *color_moments(cool)))
    torch.testing.assert_close(both[..., :15], half[..., :15])


def test_style_masks_choose_the_pixels_whose_colours_are_taken() -> None:
    photo, painting = _image(9, 0.3, 0.4), _image(10, 0.1, 0.3)
    painting[..., 10:20, 10:20] = _image(13, 0.55, 0.3)[..., 10:20, 10:20]  # a brighter region
    region = torch.zeros(1, 1, 24, 30)
    region[..., 10:20, 10:20] = 1.0
    start = recolored_content(photo, [painting], [1.0], style_masks=[region])
    assert float(start.min()) > 0 and float(start.max()) < 1  # nothing clamped
    got_mean, _ = _moments(_pixels(start))
    want_mean, _ = _moments(painting[0, :, 10:20, 10:20].reshape(3, -1).numpy())
    np.testing.assert_allclose(got_mean, want_mean, atol=1e-6)
    # A mask left selecting nothing (a speck lost to a coarse level): every pixel counts.
    nothing = recolored_content(photo, [painting], [1.0], style_masks=[torch.zeros_like(region)])
    torch.testing.assert_close(nothing, recolored(photo, *color_moments(painting)))


def test_the_default_start_is_the_recoloured_content_and_the_paper_starts_from_noise() -> None:
    assert StyleOptions().init == "recolored"
    assert StyleOptions(paper=True).init == "noise"
    photo = _image(11, 0.3, 0.4).float()
    painting = _image(12, 0.1, 0.5).float()
    start = initial_image("recolored", photo, CAFFE, seed=0, styles=[painting], blend=[1.0])
    torch.testing.assert_close(
        CAFFE.to_rgb(start), recolored(photo, *color_moments(painting)), atol=1e-5, rtol=0
    )
    # Without style images (nothing to take colours from) it is the content.
    plain = initial_image("recolored", photo, CAFFE, seed=0)
    torch.testing.assert_close(CAFFE.to_rgb(plain), photo, atol=1e-5, rtol=0)
