"""Reading, resizing and saving images.

Reading accepts any format Pillow decodes (JPEG, PNG, WebP, TIFF, BMP, GIF's first frame …),
honours EXIF orientation, converts every mode to 8-bit RGB and refuses decompression bombs.
Saving is atomic: a temporary file in the target folder, then a rename.
"""

from __future__ import annotations

import os
import stat
import tempfile
import warnings
from collections.abc import Callable, Sequence
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
            return _decode(handle, path, max_pixels)
    except UnidentifiedImageError:
        raise InputError(f"{path}: not an image, or a format Pillow cannot read") from None
    except Image.DecompressionBombError:
        raise InputError(f"{path}: refused, too many pixels (decompression bomb guard)") from None
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError) as error:
        if isinstance(error, InputError):
            raise
        raise InputError(f"{path}: cannot decode image ({_one_line(error)})") from None


def open_regular_file(path: Path) -> IO[bytes]:
    """Open ``path`` for reading if it is a regular file, else raise :class:`InputError`.

    Opened without blocking and checked on the open descriptor, so a fifo (which would block
    ``open`` until a writer appears) or a device is refused at once, even if it replaced a
    regular file after a check.
    """
    try:
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, not a file") from None
    except OSError as error:
        raise InputError(f"{path}: cannot open ({error.strerror or error})") from None
    mode = os.fstat(descriptor).st_mode
    if not stat.S_ISREG(mode):
        os.close(descriptor)
        kind = "a directory" if stat.S_ISDIR(mode) else "not a regular file (fifo, device, socket)"
        raise InputError(f"{path}: is {kind}")
    if hasattr(os, "set_blocking"):
        os.set_blocking(descriptor, True)
    return os.fdopen(descriptor, "rb")


def _decode(handle: IO[bytes], path: Path, max_pixels: int) -> Image.Image:
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
            return to_rgb(ImageOps.exif_transpose(image))


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


def scaled_size(
    size: tuple[int, int], long_side: int | None = None, short_side: int | None = None
) -> tuple[int, int]:
    """``(width, height)`` scaled, aspect ratio kept, so that its long side is ``long_side``
    (or its short side ``short_side``) pixels; every side at least 1. The one place where
    normstyle computes a resized image's size."""
    width, height = size
    if width <= 0 or height <= 0:
        raise InputError(f"the image has no pixels ({width}×{height})")
    if (long_side is None) == (short_side is None):
        raise ValueError("give exactly one of long_side and short_side")
    target = long_side if long_side is not None else short_side
    assert target is not None
    if not isinstance(target, int) or target <= 0:
        raise OptionError(f"size must be a positive integer, got {target!r}")
    scale = target / (max(width, height) if long_side is not None else min(width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def _resize(image: Image.Image, size: tuple[int, int], max_pixels: int) -> Image.Image:
    if size[0] * size[1] > max_pixels:
        raise InputError(
            f"{image.width}×{image.height} px would become {size[0]}×{size[1]} px, more than"
            f" the limit of {max_pixels} pixels"
        )
    if size == image.size:
        return image.copy()
    return image.resize(size, Image.Resampling.LANCZOS)


def resize_long_side(
    image: Image.Image, size: int, max_pixels: int = DEFAULT_MAX_PIXELS
) -> Image.Image:
    """Scale ``image`` so that its longer side is ``size`` pixels (aspect ratio kept); refuse
    a result of more than ``max_pixels`` pixels."""
    return _resize(image, scaled_size(image.size, long_side=size), max_pixels)


def resize_short_side(
    image: Image.Image, size: int, max_pixels: int = DEFAULT_MAX_PIXELS
) -> Image.Image:
    """Scale ``image`` so that its shorter side is ``size`` pixels (aspect ratio kept); refuse
    a result of more than ``max_pixels`` pixels (a 40000×1 strip at short side 256)."""
    return _resize(image, scaled_size(image.size, short_side=size), max_pixels)


def check_output_path(path: str | os.PathLike[str]) -> Path:
    """Fail early (before any long computation) if ``path`` cannot be written as an image."""
    if not str(path):
        raise OptionError("the output file name is empty")
    path = Path(path)
    if path.suffix.lower() not in SAVE_FORMATS:
        raise OptionError(
            f"{path}: unsupported output format '{path.suffix}'; use one of "
            + ", ".join(sorted(SAVE_FORMATS))
        )
    return check_target(path)


def check_target(path: str | os.PathLike[str]) -> Path:
    """Fail early if a file cannot be written at ``path``: its folder is missing or not
    writable (tried by creating a file there: permission bits do not stop root, /proc does), or
    ``path`` is a directory or some other non-regular file."""
    path = Path(path)
    if not str(path):
        raise OptionError("an output file name is empty")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(f"{path}: folder {parent} does not exist")
    if path.is_dir():
        raise InputError(f"{path}: is a directory")
    if path.exists() and not path.is_file():
        raise InputError(f"{path}: exists and is not a regular file")
    reason = _unwritable(parent)
    if reason:
        raise InputError(f"{path}: cannot write in {parent} ({reason})")
    return path


def _unwritable(folder: Path) -> str | None:
    """Why no file can be created in ``folder`` (tried, then removed), or None."""
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".normstyle-", suffix=".probe"):
            return None
    except OSError as error:
        return str(error.strerror or error)


def check_folder(folder: str | os.PathLike[str], create: bool = False) -> Path:
    """Check that files can be written in ``folder``: if it exists, in it; else in its nearest
    existing ancestor, where it could be created. ``create`` makes it (with its parents)."""
    folder = Path(folder)
    if not str(folder):
        raise OptionError("an output folder name is empty")
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{folder}: exists and is not a folder")
    if create:
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            reason = error.strerror or error
            raise InputError(f"{folder}: cannot create the folder ({reason})") from None
    existing = folder
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        raise InputError(f"{folder}: cannot be created, {existing} is not a folder")
    reason = _unwritable(existing)
    if reason:
        where = "" if existing == folder else f" (in {existing})"
        raise InputError(f"{folder}: cannot write there{where} ({reason})")
    return folder


def save_image(image: Image.Image, path: str | os.PathLike[str]) -> Path:
    """Save ``image`` atomically: it is complete at ``path`` or not there at all."""
    path = check_output_path(path)
    image_format = SAVE_FORMATS[path.suffix.lower()]
    options = {"quality": 95} if image_format in ("JPEG", "WEBP") else {}
    return atomic_write(path, lambda handle: image.save(handle, format=image_format, **options))


def atomic_write(path: Path, write: Callable[[IO[bytes]], object]) -> Path:
    """Call ``write(binary_handle)`` on a temporary file next to ``path``, then rename it there.
    An OSError (disk full, permissions) becomes an :class:`InputError` naming ``path``."""
    atomic_write_many([(path, write)])
    return path


def atomic_write_many(items: Sequence[tuple[Path, Callable[[IO[bytes]], object]]]) -> list[Path]:
    """Write several files so that either all of them are written or none is: every target is
    checked, every file is written to a temporary name beside its target, then all are renamed.
    """
    for path, _ in items:
        check_target(path)
    temporaries: list[str] = []
    try:
        for path, write in items:
            handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 (closed below, then renamed)
                dir=path.parent, prefix=f".{path.name}.", suffix=".part", delete=False
            )
            temporaries.append(handle.name)
            try:
                with handle:
                    write(handle)
                    handle.flush()
                    os.fsync(handle.fileno())
            except OSError as error:
                raise InputError(f"{path}: cannot write ({error.strerror or error})") from None
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(handle.name, 0o666 & ~umask)
        for (path, _), temporary in zip(items, temporaries):
            try:
                os.replace(temporary, path)
            except OSError as error:
                raise InputError(f"{path}: cannot write ({error.strerror or error})") from None
    except BaseException:
        for temporary in temporaries:
            Path(temporary).unlink(missing_ok=True)
        raise
    return [path for path, _ in items]


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


ImageSource = str | os.PathLike[str] | Image.Image | np.ndarray | torch.Tensor
ACCEPTED = (
    "a file path, 'builtin:NAME', a PIL image, a numpy array (H, W, 3) or (H, W) of uint8 or of"
    " floats in [0, 1], or a tensor (3, H, W) / (1, 3, H, W) of floats in [0, 1]"
)


def decoded(source: ImageSource) -> Image.Image | torch.Tensor:
    """Any accepted image source as a PIL RGB image or a float RGB tensor (1, 3, H, W) in
    [0, 1]: files are read, arrays converted, everything checked. Raises :class:`TypeError`
    for an unsupported type and :class:`InputError` for an unusable value."""
    if isinstance(source, (str, os.PathLike)):
        return read_image(source)
    if isinstance(source, Image.Image):
        if source.width == 0 or source.height == 0:
            raise InputError(f"the image has no pixels ({source.width}×{source.height})")
        return to_rgb(source)
    if isinstance(source, np.ndarray):
        return _array_to_tensor(source)
    if isinstance(source, torch.Tensor):
        return _checked_tensor(source)
    raise TypeError(f"an image must be {ACCEPTED}; got {type(source).__name__}")


def _array_to_tensor(array: np.ndarray) -> torch.Tensor:
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] != 3:
        raise InputError(f"an image array must be (H, W, 3) or (H, W), got {array.shape}")
    if array.dtype == np.uint8:
        values = torch.from_numpy(np.ascontiguousarray(array)).float().div_(255.0)
    elif np.issubdtype(array.dtype, np.floating):
        values = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    else:
        raise InputError(f"an image array must be uint8 or float, not {array.dtype}")
    return _checked_tensor(values.permute(2, 0, 1))


def _checked_tensor(source: torch.Tensor) -> torch.Tensor:
    if source.is_complex() or not source.is_floating_point():
        raise InputError(f"an image tensor must hold floats in [0, 1], not {source.dtype}")
    rgb = source.detach().float().cpu()
    if rgb.dim() == 3:
        rgb = rgb.unsqueeze(0)
    if rgb.dim() != 4 or rgb.shape[:2] != (1, 3):
        raise InputError(
            f"an image tensor must be (3, H, W) or (1, 3, H, W), got {tuple(source.shape)}"
        )
    if rgb.shape[2] == 0 or rgb.shape[3] == 0:
        raise InputError(f"the image has no pixels ({rgb.shape[3]}×{rgb.shape[2]})")
    if not torch.isfinite(rgb).all():
        raise InputError("the image tensor has values that are not finite")
    low, high = float(rgb.min()), float(rgb.max())
    if low < -1e-6 or high > 1 + 1e-6:
        raise InputError(f"image values must lie in [0, 1], found {low:.4g} … {high:.4g}")
    return rgb.clamp(0, 1).contiguous()


def image_size(image: Image.Image | torch.Tensor) -> tuple[int, int]:
    """``(width, height)`` of a decoded image (see :func:`decoded`)."""
    if isinstance(image, Image.Image):
        return image.size
    return int(image.shape[-1]), int(image.shape[-2])


def load_rgb(source: ImageSource, long_side: int | None = None) -> torch.Tensor:
    """Any accepted image source → RGB float tensor (1, 3, H, W) in [0, 1], optionally resized
    so its long side is ``long_side``.

    Accepts what :func:`decoded` accepts. Tensors and arrays are resized in float (not
    quantised to 8 bits); files and PIL images with Lanczos.
    """
    image = decoded(source)
    if isinstance(image, Image.Image):
        if long_side is not None:
            image = resize_long_side(image, long_side)
        return image_to_rgb(image)
    if long_side is not None and max(image.shape[2:]) != long_side:
        width, height = scaled_size(image_size(image), long_side=long_side)
        if width * height > DEFAULT_MAX_PIXELS:
            raise InputError(f"{width}×{height} px is more than {DEFAULT_MAX_PIXELS} pixels")
        image = torch.nn.functional.interpolate(
            image, size=(height, width), mode="bicubic", antialias=True, align_corners=False
        ).clamp(0, 1)
    return image.contiguous()
