"""Saving output images: the target checked before the work starts, the file written
atomically (complete at its path, or not there at all)."""

from __future__ import annotations

import io
import os
from pathlib import Path

from PIL import Image
from PIL.PngImagePlugin import PngInfo

from normstyle.errors import OptionError
from normstyle.io.decode import FORMATS
from normstyle.io.files import atomic_write, check_target


def check_output_path(path: str | os.PathLike[str]) -> Path:
    """Fail early (before any long computation) if ``path`` cannot be written as an image."""
    if not str(path):
        raise OptionError("the output file name is empty")
    path = Path(path)
    if path.suffix.lower() not in FORMATS:
        raise OptionError(
            f"{path}: unsupported output format '{path.suffix}'; use one of "
            + ", ".join(sorted(FORMATS))
        )
    return check_target(path)


def save_image(image: Image.Image, path: str | os.PathLike[str]) -> Path:
    """Save ``image`` atomically: it is complete at ``path`` or not there at all."""
    path = check_output_path(path)
    image_format = FORMATS[path.suffix.lower()]
    options = {"quality": 95} if image_format in ("JPEG", "WEBP") else {}
    return atomic_write(path, lambda handle: image.save(handle, format=image_format, **options))


def image_png(image: Image.Image, text: dict[str, str] | None = None) -> bytes:
    """``image`` as PNG bytes, with ``text`` in its tEXt chunks (settings a file carries)."""
    info = PngInfo()
    for key, value in (text or {}).items():
        info.add_text(key, value)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", pnginfo=info)
    return buffer.getvalue()
