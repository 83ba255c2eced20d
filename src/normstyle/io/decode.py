"""Decoding: any image a user gives (a file, ``builtin:NAME``, a PIL image, an array, a tensor)
becomes upright RGB, checked.

Reading accepts any format Pillow decodes (JPEG, PNG, WebP, TIFF, BMP, GIF's first frame …),
honours EXIF orientation, converts every mode to 8-bit RGB and refuses decompression bombs.
Every source ends as one thing, a float32 array (H, W, 3) in [0, 1], which
:mod:`normstyle.io.resize` sizes for a network.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import IO

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from normstyle.errors import InputError, one_line
from normstyle.io.builtin import builtin_image, is_builtin
from normstyle.io.files import open_regular_file

# Pillow's own warning threshold (~89 megapixels); far above any sensible style-transfer input.
DEFAULT_MAX_PIXELS = 89_478_485

# The formats normstyle writes (by suffix, Pillow's name) and reads (those and GIF).
FORMATS = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".webp": "WEBP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".bmp": "BMP",
}
READ_SUFFIXES = frozenset(FORMATS) | {".gif"}

_SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I"}
_ALPHA_MODES = {"LA", "La", "PA", "RGBA", "RGBa"}


WHITE = (255, 255, 255)


def read_image(
    source: str | os.PathLike[str],
    max_pixels: int = DEFAULT_MAX_PIXELS,
    background: tuple[int, int, int] = WHITE,
) -> Image.Image:
    """Read an image file (or ``builtin:NAME``) as an upright 8-bit RGB image, transparent
    pixels composited over ``background`` (white: a picture; black: a mask, whose transparent
    part selects nothing).

    Raises :class:`InputError` with a one-line message for a missing file, a directory, anything
    that is not a regular file (a fifo, a device: refused without blocking on it), a file that is
    not an image, a truncated image, or one larger than ``max_pixels``.
    """
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError(f"an image file name must be a str or a path, not {type(source).__name__}")
    if is_builtin(source):
        return builtin_image(str(source))
    if not str(source):
        raise InputError("an image file name is empty")
    path = Path(source)
    try:
        with open_regular_file(path) as handle:
            return _decode(handle, path, max_pixels, background)
    except UnidentifiedImageError:
        raise InputError(f"{path}: not an image, or a format Pillow cannot read") from None
    except Image.DecompressionBombError:
        raise InputError(f"{path}: refused, too many pixels (decompression bomb guard)") from None
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError) as error:
        if isinstance(error, InputError):
            raise
        raise InputError(f"{path}: cannot decode image ({one_line(error)})") from None


def read_image_bytes(
    data: bytes,
    name: str,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    background: tuple[int, int, int] = WHITE,
) -> Image.Image:
    """Like :func:`read_image` for the bytes of an image file (an upload); ``name`` is how
    messages call it. The same checks: not an image, truncated, too many pixels."""
    path = Path(name)
    try:
        return _decode(io.BytesIO(data), path, max_pixels, background)
    except UnidentifiedImageError:
        raise InputError(f"{name}: not an image, or a format Pillow cannot read") from None
    except Image.DecompressionBombError:
        raise InputError(f"{name}: refused, too many pixels (decompression bomb guard)") from None
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError) as error:
        if isinstance(error, InputError):
            raise
        raise InputError(f"{name}: cannot decode image ({one_line(error)})") from None


def _decode(
    handle: IO[bytes], path: Path, max_pixels: int, background: tuple[int, int, int]
) -> Image.Image:
    with warnings.catch_warnings():
        # A corrupt EXIF block (seen in ImageNet files) only costs the orientation tag; Pillow's
        # TIFF parser warns about it while the file is opened and read. Nothing else is hidden.
        warnings.filterwarnings("ignore", category=UserWarning, module=r"PIL\.TiffImagePlugin")
        with Image.open(handle) as image:
            width, height = image.size
            if width * height > max_pixels:
                raise InputError(
                    f"{path}: {width}×{height} is larger than the limit of {max_pixels} pixels"
                )
            if width == 0 or height == 0:
                raise InputError(f"{path}: the image has no pixels ({width}×{height})")
            image.seek(0)  # animated GIF/WebP/TIFF: the first frame
            return to_rgb(ImageOps.exif_transpose(image), background)


def to_rgb(image: Image.Image, background: tuple[int, int, int] = WHITE) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB.

    Transparent pixels are composited over ``background`` (white by default); 16-bit and float
    greyscale are rescaled (not clipped) to 8 bits; CMYK, palette and the rest use Pillow's
    conversions.
    """
    mode = image.mode
    if mode == "RGB":
        return image.copy()
    if mode in _SIXTEEN_BIT_MODES:
        values = np.asarray(image, dtype=np.float64)
        # 16-bit data span 0–65535; an 'I' image that only uses 0–255 is 8-bit data in disguise.
        peak = 65535.0 if values.max(initial=0) > 255 or mode != "I" else 255.0
        grey = np.clip(np.round(values / peak * 255.0), 0, 255).astype(np.uint8)
        return Image.fromarray(grey, mode="L").convert("RGB")
    if mode == "F":
        values = np.asarray(image, dtype=np.float64)
        peak = 1.0 if values.max(initial=0) <= 1.0 else 255.0
        grey = np.clip(np.round(values / peak * 255.0), 0, 255).astype(np.uint8)
        return Image.fromarray(grey, mode="L").convert("RGB")
    if mode == "P" and "transparency" in image.info:
        image, mode = image.convert("RGBA"), "RGBA"
    if mode in _ALPHA_MODES:
        rgba = image.convert("RGBA")
        under = Image.new("RGBA", rgba.size, (*background, 255))
        return Image.alpha_composite(under, rgba).convert("RGB")
    return image.convert("RGB")


ImageSource = str | os.PathLike[str] | Image.Image | np.ndarray | torch.Tensor
ACCEPTED = (
    "a file path, 'builtin:NAME', a PIL image, a numpy array (H, W, 3) or (H, W) of uint8 or of"
    " floats in [0, 1], or a tensor (3, H, W) / (1, 3, H, W) of floats in [0, 1]"
)
RGB = np.ndarray  # float32 (H, W, 3) in [0, 1]: every decoded image


def decoded(source: ImageSource, background: tuple[int, int, int] = WHITE) -> RGB:
    """Any accepted image source as a float32 RGB array (H, W, 3) in [0, 1]: files are read,
    PIL images converted (transparency over ``background``), arrays and tensors checked (never
    quantised to 8 bits). Raises :class:`TypeError` for an unsupported type and
    :class:`InputError` for an unusable value."""
    if isinstance(source, (str, os.PathLike)):
        return image_to_array(read_image(source, background=background))
    if isinstance(source, Image.Image):
        if source.width == 0 or source.height == 0:
            raise InputError(f"the image has no pixels ({source.width}×{source.height})")
        return image_to_array(to_rgb(source, background))
    if isinstance(source, np.ndarray):
        return _checked_array(source)
    if isinstance(source, torch.Tensor):
        return _checked_tensor(source)
    raise TypeError(f"an image must be {ACCEPTED}; got {type(source).__name__}")


def image_to_array(image: Image.Image) -> RGB:
    """An 8-bit RGB PIL image as a float32 array (H, W, 3) in [0, 1]."""
    return np.asarray(image.convert("RGB"), dtype=np.float32) / np.float32(255.0)


def _checked_array(array: np.ndarray) -> RGB:
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] != 3:
        raise InputError(f"an image array must be (H, W, 3) or (H, W), got {array.shape}")
    if array.dtype == np.uint8:
        return array.astype(np.float32) / np.float32(255.0)
    if not np.issubdtype(array.dtype, np.floating):
        raise InputError(f"an image array must be uint8 or float, not {array.dtype}")
    return _checked_values(np.ascontiguousarray(array, dtype=np.float32), array.shape)


def _checked_tensor(source: torch.Tensor) -> RGB:
    if source.is_complex() or not source.is_floating_point():
        raise InputError(f"an image tensor must hold floats in [0, 1], not {source.dtype}")
    rgb = source.detach().float().cpu()
    if rgb.dim() == 4 and rgb.shape[0] == 1:
        rgb = rgb[0]
    if rgb.dim() != 3 or rgb.shape[0] != 3:
        raise InputError(
            f"an image tensor must be (3, H, W) or (1, 3, H, W), got {tuple(source.shape)}"
        )
    return _checked_values(rgb.permute(1, 2, 0).contiguous().numpy(), tuple(source.shape))


def _checked_values(rgb: np.ndarray, shape: tuple[int, ...]) -> RGB:
    height, width = rgb.shape[:2]
    if height == 0 or width == 0:
        raise InputError(f"the image has no pixels ({width}×{height})")
    if not np.isfinite(rgb).all():
        raise InputError("the image has values that are not finite")
    low, high = float(rgb.min()), float(rgb.max())
    if low < -1e-6 or high > 1 + 1e-6:
        raise InputError(f"image values must lie in [0, 1], found {low:.4g} … {high:.4g}")
    return np.clip(rgb, 0.0, 1.0)


def image_size(image: RGB) -> tuple[int, int]:
    """``(width, height)`` of a decoded image (see :func:`decoded`)."""
    return int(image.shape[1]), int(image.shape[0])
