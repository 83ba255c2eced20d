"""Reading, resizing and saving images.

Reading accepts any format Pillow decodes (JPEG, PNG, WebP, TIFF, BMP, GIF's first frame …),
honours EXIF orientation, converts every mode to 8-bit RGB and refuses decompression bombs.
Saving is atomic: a temporary file in the target folder, then a rename.
"""

from __future__ import annotations

import os
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import IO

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from normstyle.builtin_images import builtin_image, is_builtin
from normstyle.errors import InputError, OptionError
from normstyle.preprocessing import image_to_rgb

# Pillow's own warning threshold (~89 megapixels); far above any sensible style-transfer input.
DEFAULT_MAX_PIXELS = 89_478_485

SAVE_FORMATS = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".webp": "WEBP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".bmp": "BMP",
}
READ_SUFFIXES = frozenset(SAVE_FORMATS) | {".gif"}

_SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N", "I"}
_ALPHA_MODES = {"LA", "La", "PA", "RGBA", "RGBa"}


def read_image(source: str | os.PathLike[str], max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Read an image file (or ``builtin:NAME``) as an upright 8-bit RGB image.

    Raises :class:`InputError` with a one-line message for a missing file, a directory, a file
    that is not an image, a truncated image, or one larger than ``max_pixels``.
    """
    if is_builtin(source):
        return builtin_image(str(source))
    path = Path(source)
    if not path.exists():
        raise InputError(f"{path}: no such file")
    if path.is_dir():
        raise InputError(f"{path}: is a directory, not an image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise InputError(
                        f"{path}: {width}×{height} is larger than the limit of {max_pixels} pixels"
                    )
                image.seek(0)  # animated GIF/WebP/TIFF: the first frame
                upright = ImageOps.exif_transpose(image)
                return to_rgb(upright)
    except UnidentifiedImageError:
        raise InputError(f"{path}: not an image, or a format Pillow cannot read") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InputError(f"{path}: refused, too many pixels (decompression bomb guard)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        if isinstance(error, InputError):
            raise
        raise InputError(f"{path}: cannot decode image ({_one_line(error)})") from None


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB.

    Transparent pixels are composited over white; 16-bit and float greyscale are rescaled (not
    clipped) to 8 bits; CMYK, palette and the rest use Pillow's conversions.
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
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def resize_long_side(image: Image.Image, size: int) -> Image.Image:
    """Scale ``image`` so that its longer side is ``size`` pixels (aspect ratio kept)."""
    if size <= 0:
        raise OptionError(f"size must be positive, got {size}")
    width, height = image.size
    scale = size / max(width, height)
    new_size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if new_size == image.size:
        return image.copy()
    return image.resize(new_size, Image.Resampling.LANCZOS)


def resize_short_side(image: Image.Image, size: int) -> Image.Image:
    """Scale ``image`` so that its shorter side is ``size`` pixels (aspect ratio kept)."""
    if size <= 0:
        raise OptionError(f"size must be positive, got {size}")
    width, height = image.size
    return resize_long_side(image, max(1, round(max(width, height) * size / min(width, height))))


def check_output_path(path: str | os.PathLike[str]) -> Path:
    """Fail early (before any long computation) if ``path`` cannot be written as an image."""
    path = Path(path)
    if path.suffix.lower() not in SAVE_FORMATS:
        raise OptionError(
            f"{path}: unsupported output format '{path.suffix}'; use one of "
            + ", ".join(sorted(SAVE_FORMATS))
        )
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"{path}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"{path}: folder {parent} is not writable")
    if path.is_dir():
        raise InputError(f"{path}: is a directory")
    return path


def save_image(image: Image.Image, path: str | os.PathLike[str]) -> Path:
    """Save ``image`` atomically: it is complete at ``path`` or not there at all."""
    path = check_output_path(path)
    image_format = SAVE_FORMATS[path.suffix.lower()]
    options = {"quality": 95} if image_format in ("JPEG", "WEBP") else {}
    return atomic_write(path, lambda handle: image.save(handle, format=image_format, **options))


def atomic_write(path: Path, write: Callable[[IO[bytes]], object]) -> Path:
    """Call ``write(binary_handle)`` on a temporary file next to ``path``, then rename it there."""
    handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 (closed below, then renamed)
        dir=path.parent, prefix=f".{path.name}.", suffix=".part", delete=False
    )
    try:
        with handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(handle.name, 0o666 & ~umask)
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise
    return path


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


ImageSource = str | os.PathLike[str] | Image.Image | torch.Tensor


def load_rgb(source: ImageSource, long_side: int | None = None) -> torch.Tensor:
    """Any accepted image source → RGB float tensor (1, 3, H, W) in [0, 1], optionally resized
    so its long side is ``long_side``.

    Accepts a path or ``builtin:NAME``, a PIL image, or a float tensor (3, H, W) / (1, 3, H, W)
    of RGB values in [0, 1] (resized in float, not quantised to 8 bits).
    """
    if isinstance(source, torch.Tensor):
        rgb = source.detach().float()
        if rgb.dim() == 3:
            rgb = rgb.unsqueeze(0)
        if rgb.dim() != 4 or rgb.shape[:2] != (1, 3):
            raise OptionError(
                f"an image tensor must be (3, H, W) or (1, 3, H, W), got {tuple(source.shape)}"
            )
        if long_side is not None and max(rgb.shape[2:]) != long_side:
            scale = long_side / max(rgb.shape[2:])
            size = [max(1, round(side * scale)) for side in rgb.shape[2:]]
            rgb = torch.nn.functional.interpolate(
                rgb, size=size, mode="bicubic", antialias=True, align_corners=False
            ).clamp(0, 1)
        return rgb.cpu().contiguous()
    image = to_rgb(source) if isinstance(source, Image.Image) else read_image(source)
    if long_side is not None:
        image = resize_long_side(image, long_side)
    return image_to_rgb(image)
