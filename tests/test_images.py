"""Image reading in every mode, format and EXIF orientation (files generated here), refusal of
bombs and non-images, and atomic saving."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from normstyle.errors import InputError, OptionError
from normstyle.io import save as images
from normstyle.io.decode import read_image
from normstyle.io.resize import fit, load_rgb
from normstyle.io.save import save_image


def pattern(width: int = 6, height: int = 4) -> np.ndarray:
    """An asymmetric RGB pattern: every pixel distinct."""
    ys, xs = np.mgrid[0:height, 0:width]
    return np.stack([xs * 40, ys * 60, (xs + ys) * 10 + 5], axis=-1).astype(np.uint8)


def test_rgb_formats_round_trip_exactly(tmp_path: Path) -> None:
    array = pattern()
    for suffix in (".png", ".tif", ".bmp", ".webp"):
        path = tmp_path / f"p{suffix}"
        options = {"lossless": True} if suffix == ".webp" else {}
        Image.fromarray(array).save(path, **options)
        np.testing.assert_array_equal(np.asarray(read_image(path)), array, err_msg=suffix)


def test_jpeg_is_read(tmp_path: Path) -> None:
    path = tmp_path / "p.jpg"
    Image.new("RGB", (8, 8), (200, 30, 60)).save(path, quality=100)
    got = np.asarray(read_image(path)).astype(int)
    assert np.abs(got - [200, 30, 60]).max() <= 3


def test_gif_first_frame(tmp_path: Path) -> None:
    path = tmp_path / "a.gif"
    frames = [Image.new("RGB", (4, 4), colour) for colour in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100)
    assert read_image(path).getpixel((0, 0)) == (255, 0, 0)


def test_grey_palette_and_bilevel_modes(tmp_path: Path) -> None:
    grey = np.arange(24, dtype=np.uint8).reshape(4, 6) * 10
    Image.fromarray(grey, mode="L").save(tmp_path / "l.png")
    np.testing.assert_array_equal(
        np.asarray(read_image(tmp_path / "l.png")), np.repeat(grey[..., None], 3, -1)
    )
    palette = Image.fromarray(pattern()).convert("P", palette=Image.Palette.ADAPTIVE, colors=256)
    palette.save(tmp_path / "p.png")
    np.testing.assert_array_equal(
        np.asarray(read_image(tmp_path / "p.png")), np.asarray(palette.convert("RGB"))
    )
    Image.new("1", (3, 3), 1).save(tmp_path / "b.png")
    assert read_image(tmp_path / "b.png").getpixel((1, 1)) == (255, 255, 255)


def test_alpha_is_composited_over_white(tmp_path: Path) -> None:
    rgba = np.zeros((2, 2, 4), dtype=np.uint8)
    rgba[0, 0] = (255, 0, 0, 255)  # opaque red
    rgba[0, 1] = (0, 0, 255, 0)  # fully transparent → white
    rgba[1, 0] = (0, 0, 0, 128)  # half black over white → ~127
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "a.png")
    got = np.asarray(read_image(tmp_path / "a.png")).astype(int)
    assert tuple(got[0, 0]) == (255, 0, 0)
    assert tuple(got[0, 1]) == (255, 255, 255)
    assert np.abs(got[1, 0] - 127).max() <= 1
    la = Image.fromarray(np.array([[[0, 0], [100, 255]]], dtype=np.uint8), mode="LA")
    la.save(tmp_path / "la.png")
    assert read_image(tmp_path / "la.png").getpixel((0, 0)) == (255, 255, 255)
    assert read_image(tmp_path / "la.png").getpixel((1, 0)) == (100, 100, 100)
    transparent_palette = Image.new("P", (2, 1))
    transparent_palette.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    transparent_palette.putpixel((1, 0), 1)
    transparent_palette.info["transparency"] = 0
    transparent_palette.save(tmp_path / "pt.png", transparency=0)
    got = read_image(tmp_path / "pt.png")
    assert got.getpixel((0, 0)) == (255, 255, 255) and got.getpixel((1, 0)) == (200, 100, 50)


def test_cmyk(tmp_path: Path) -> None:
    Image.new("CMYK", (2, 2), (0, 255, 255, 0)).save(tmp_path / "c.jpg", quality=100)
    r, g, b = read_image(tmp_path / "c.jpg").getpixel((0, 0))
    assert r > 240 and g < 15 and b < 15  # pure red


def test_sixteen_bit_grey_is_rescaled_not_clipped(tmp_path: Path) -> None:
    values = np.array([[0, 257 * 128, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode in ("I;16", "I")
    got = np.asarray(read_image(tmp_path / "g16.png"))[0, :, 0]
    assert list(got) == [0, 128, 255]
    floats = np.array([[0.0, 0.5, 1.0]], dtype=np.float32)
    Image.fromarray(floats, mode="F").save(tmp_path / "f.tif")
    assert list(np.asarray(read_image(tmp_path / "f.tif"))[0, :, 0]) == [0, 128, 255]


# EXIF orientation → what a viewer shows, written with numpy (independent of Pillow).
ORIENTATIONS = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1, :],
    5: lambda a: a.transpose(1, 0, 2),  # transpose: the main diagonal
    6: lambda a: np.rot90(a, k=-1),
    7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),  # transverse: the anti-diagonal
    8: lambda a: np.rot90(a, k=1),
}


@pytest.mark.parametrize("orientation", list(ORIENTATIONS))
def test_exif_orientation_is_applied(tmp_path: Path, orientation: int) -> None:
    array = pattern()
    image = Image.fromarray(array)
    exif = image.getexif()
    exif[0x0112] = orientation
    path = tmp_path / "o.png"
    image.save(path, exif=exif)
    np.testing.assert_array_equal(np.asarray(read_image(path)), ORIENTATIONS[orientation](array))


def _png_header_only(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\0" * 16))
        + chunk(b"IEND", b"")
    )


def test_decompression_bombs_are_refused(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_header_only(100_000, 100_000))  # 10 gigapixels in 80 bytes
    with pytest.raises(InputError, match=r"too many pixels|larger than the limit"):
        read_image(bomb)
    Image.new("RGB", (40, 30)).save(tmp_path / "ok.png")
    with pytest.raises(InputError, match="larger than the limit of 1000 pixels"):
        read_image(tmp_path / "ok.png", max_pixels=1000)


def test_non_images_are_refused_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "text.jpg").write_text("hello")
    good = tmp_path / "good.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(
        good
    )
    (tmp_path / "cut.jpg").write_bytes(good.read_bytes()[:300])
    cases = {
        "text.jpg": "not an image",
        "cut.jpg": "cannot decode",
        "missing.png": "no such file",
        ".": "is a directory",
    }
    for name, message in cases.items():
        with pytest.raises(InputError, match=message) as info:
            read_image(tmp_path / name)
        assert "\n" not in str(info.value)


def test_fit_to_a_long_or_a_short_side() -> None:
    wide, tall = np.zeros((200, 300, 3), np.float32), np.zeros((300, 200, 3), np.float32)
    assert fit(wide, long_side=150).shape == (100, 150, 3)
    assert fit(tall, long_side=60).shape == (60, 40, 3)
    assert fit(wide, short_side=100).shape == (100, 150, 3)
    with pytest.raises(OptionError):
        fit(wide, long_side=0)
    with pytest.raises(ValueError, match="exactly one"):
        fit(wide, long_side=10, short_side=10)


def lanczos_reference(values: np.ndarray, size: int) -> np.ndarray:
    """Lanczos-3 resampling of axis 0 in float64, written out from the filter's definition
    (sinc(x)·sinc(x/3), support widened by the scale when shrinking, weights summing to 1,
    pixel centres at i + ½): an independent reference for io.resize."""
    scale = values.shape[0] / size
    widen = max(scale, 1.0)
    out = np.empty((size, *values.shape[1:]))
    for i in range(size):
        centre = (i + 0.5) * scale
        first = max(int(centre - 3 * widen + 0.5), 0)
        last = min(int(centre + 3 * widen + 0.5), values.shape[0])
        x = (np.arange(first, last) + 0.5 - centre) / widen
        weights = np.where(np.abs(x) < 3, np.sinc(x) * np.sinc(x / 3), 0.0)
        out[i] = np.tensordot(weights / weights.sum(), values[first:last], axes=1)
    return out


@pytest.mark.parametrize("size", [(23, 17), (90, 70)])  # shrink, enlarge
def test_one_resize_is_lanczos_in_float(size: tuple[int, int]) -> None:
    from normstyle.io.resize import resize

    rgb = np.random.default_rng(0).random((40, 30, 3)).astype(np.float32)
    width, height = size
    want = lanczos_reference(
        lanczos_reference(rgb.astype(np.float64), height).swapaxes(0, 1), width
    )
    np.testing.assert_allclose(resize(rgb, size), np.clip(want.swapaxes(0, 1), 0, 1), atol=2e-5)


def test_every_kind_of_source_is_resized_alike(tmp_path: Path) -> None:
    array = np.random.default_rng(1).integers(0, 256, (30, 40, 3), np.uint8)
    Image.fromarray(array).save(tmp_path / "p.png")
    as_tensor = torch.from_numpy(array).permute(2, 0, 1).float() / 255
    from_path = load_rgb(tmp_path / "p.png", long_side=17)
    for source in (Image.fromarray(array), array, array / 255.0, as_tensor):
        torch.testing.assert_close(load_rgb(source, long_side=17), from_path, atol=1e-6, rtol=0)


def test_cover_keeps_the_aspect_ratio_by_cropping_the_centre() -> None:
    from normstyle.io.resize import cover

    rgb = np.zeros((20, 60, 3), np.float32)
    rgb[:, 20:40] = 1.0  # a white square in the middle of a black 3:1 strip
    square = cover(rgb, (10, 10))
    assert square.shape == (10, 10, 3)
    np.testing.assert_allclose(square, 1.0, atol=1e-6)  # the centre crop: only the square


def test_load_rgb_accepts_paths_images_and_tensors(tmp_path: Path) -> None:
    array = pattern(8, 4)
    Image.fromarray(array).save(tmp_path / "p.png")
    from_path = load_rgb(tmp_path / "p.png")
    from_pil = load_rgb(Image.fromarray(array))
    from_tensor = load_rgb(torch.from_numpy(array).permute(2, 0, 1).float() / 255)
    torch.testing.assert_close(from_path, from_pil)
    torch.testing.assert_close(from_path, from_tensor)
    from_array = load_rgb(array)
    from_float_array = load_rgb(array.astype(np.float64) / 255)
    torch.testing.assert_close(from_path, from_array)
    torch.testing.assert_close(from_path, from_float_array)
    grey = load_rgb(array[..., 0])
    torch.testing.assert_close(grey, from_path[:, :1].expand(1, 3, 4, 8))
    assert load_rgb(from_tensor, 4).shape == (1, 3, 2, 4)


@pytest.mark.parametrize(
    ("source", "error", "message"),
    [
        (torch.rand(2, 3, 4, 4), InputError, r"must be \(3, H, W\) or \(1, 3, H, W\)"),
        (torch.rand(3, 0, 4), InputError, "no pixels"),
        (torch.full((3, 4, 4), float("nan")), InputError, "not finite"),
        (torch.rand(3, 4, 4) * 255, InputError, r"must lie in \[0, 1\]"),
        (torch.ones(3, 4, 4, dtype=torch.long), InputError, "must hold floats"),
        (np.zeros((4, 4, 4), np.uint8), InputError, r"must be \(H, W, 3\)"),
        (np.zeros((4, 4, 3), np.int32), InputError, "uint8 or float"),
        (Image.new("RGB", (0, 0)), InputError, r"no pixels \(0×0\)"),
        (None, TypeError, "an image must be a file path, 'builtin:NAME', a PIL image"),
        (b"\x89PNG", TypeError, "got bytes"),
        (42, TypeError, "got int"),
    ],
)
def test_bad_image_sources_are_named_clearly(source, error, message) -> None:
    with pytest.raises(error, match=message):
        load_rgb(source, 32)


def test_save_is_atomic(tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "out.png"
    image = Image.fromarray(pattern())
    save_image(image, out)
    np.testing.assert_array_equal(np.asarray(Image.open(out)), pattern())

    def broken_save(self, fp, format=None, **params):
        fp.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    target = tmp_path / "never.png"
    with pytest.raises(InputError, match="disk full") as info:
        save_image(image, target)
    # The message names the output, not the temporary file it was being written to.
    assert str(info.value) == f"{target}: cannot write (disk full)"
    assert not target.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]  # no temp file left behind


def test_unwritable_and_unsupported_outputs(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        images.check_output_path(tmp_path / "no" / "x.png")
    with pytest.raises(OptionError, match="unsupported output format"):
        images.check_output_path(tmp_path / "x.gifx")
