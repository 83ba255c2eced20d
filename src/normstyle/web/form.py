"""A submitted form of ``normstyle serve``'s page, checked and turned into a job: every upload
decoded (one at a time, through the decoder's checks) and shrunk at once, every option checked
before the job is queued, a bad one refused in one line; the job's settings and the equivalent
command line recorded for its download."""

from __future__ import annotations

import random
import re
import shlex
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from normstyle.errors import OptionError
from normstyle.io.builtin import BUILTIN_IMAGES
from normstyle.io.decode import WHITE, image_to_array, read_image_bytes
from normstyle.web.jobs import Job

# Each uploaded file may be at most this large, and a whole form this many times as large.
MAX_FILE_BYTES = 20 << 20
MAX_FILES = 9  # content, up to four styles and their masks
MAX_FIELD_BYTES = 64 << 10  # a text field
MAX_STYLES = 4
PRESERVE = ("none", "luminance", "histogram", "luminance-swap")


@dataclass
class Settings:
    """What a server allows and holds: the largest output, the queue, the networks it built,
    and whether it listens on loopback only (then only loopback host names are answered)."""

    max_size: int = 1024
    queue: int = 8
    models: dict[tuple, Any] = field(default_factory=dict)
    loopback: bool = True
    # One upload decoded at a time: a small file may hold a large picture.
    decoding: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(1))


class FormError(Exception):
    """A bad form: the page shows the message (HTTP ``status``)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


async def read_form(form: Any) -> dict[str, Any]:
    """The form's fields: uploads as (file name, bytes), the rest as strings."""
    fields: dict[str, Any] = {}
    for key, value in form.multi_items():
        if hasattr(value, "read"):
            data = await value.read()
            if len(data) > MAX_FILE_BYTES:
                raise FormError(f"{value.filename}: larger than {MAX_FILE_BYTES >> 20} MB", 413)
            if data:
                fields.setdefault(key, []).append((value.filename or key, data))
        else:
            fields.setdefault(key, []).append(str(value))
    return fields


def _one(fields: dict[str, Any], name: str, default: str = "") -> str:
    values = [v for v in fields.get(name, []) if isinstance(v, str)]
    return values[0].strip() if values else default


def _picture(
    upload: tuple[str, bytes],
    settings: Settings,
    background: tuple[int, int, int] = WHITE,
) -> Any:
    """An upload decoded (one at a time) and shrunk at once to twice the largest output the
    server allows: a 236 KB file may hold 9000×9000 pixels, a gigabyte as float."""
    name, data = upload
    with settings.decoding:
        image = read_image_bytes(data, _safe(name), background=background)
        limit = 2 * settings.max_size
        if max(image.size) > limit:
            image.thumbnail((limit, limit), Image.Resampling.LANCZOS)
        return image_to_array(image)


def _safe(name: str) -> str:
    """A file name as messages and command lines show it: its last part, harmless characters,
    never an option (a name starting with "-" becomes "./-…")."""
    base = re.split(r"[\\/]", name)[-1] or "upload"
    safe = re.sub(r"[^\w.-]", "_", base)[:80]
    return f"./{safe}" if safe.startswith("-") else safe


def job_from_form(fields: dict[str, Any], settings: Settings) -> Job:
    """Check the form and turn it into a job (decoding every image: a bad file fails here, in
    one line, before it is queued)."""
    from normstyle.style.guidance import decoded_mask
    from normstyle.style.options import StyleOptions
    from normstyle.style.transfer import run

    uploads = [v for v in fields.get("content", []) if isinstance(v, tuple)]
    builtin = _one(fields, "content_builtin")
    if uploads:
        content, content_name = _picture(uploads[0], settings), _safe(uploads[0][0])
    elif builtin in BUILTIN_IMAGES:
        content, content_name = f"builtin:{builtin}", f"builtin:{builtin}"
    else:
        raise FormError("choose a content image (upload one, or pick a built-in one)")
    styles, style_names = [], []
    for upload in [v for v in fields.get("styles", []) if isinstance(v, tuple)]:
        styles.append(_picture(upload, settings))
        style_names.append(_safe(upload[0]))
    for name in [v for v in fields.get("style_builtins", []) if isinstance(v, str) and v]:
        if name not in BUILTIN_IMAGES:
            raise FormError(f"no built-in image '{name}'")
        styles.append(f"builtin:{name}")
        style_names.append(f"builtin:{name}")
    if not styles:
        raise FormError("choose at least one style image")
    if len(styles) > MAX_STYLES:
        raise FormError(f"at most {MAX_STYLES} style images")
    masks = [v for v in fields.get("masks", []) if isinstance(v, tuple)]
    if masks and len(masks) != len(styles):
        raise FormError(f"{len(masks)} masks for {len(styles)} style images: one per style image")
    mask_arrays = [
        decoded_mask(
            _picture(upload, settings, background=(0, 0, 0)), f"mask {number} ({_safe(upload[0])})"
        )
        for number, upload in enumerate(masks, start=1)
    ]

    size_text = _one(fields, "size", "512")
    if not size_text.isdigit() or not 32 <= int(size_text) <= settings.max_size:
        raise FormError(f"the size must be a whole number of pixels from 32 to {settings.max_size}")
    size = int(size_text)
    iterations_text = _one(fields, "iterations", "auto").lower()
    if iterations_text != "auto" and (
        not iterations_text.isdigit() or not 1 <= int(iterations_text) <= 2000
    ):
        raise FormError("iterations must be 'auto' or a whole number from 1 to 2000")
    iterations: int | str = "auto" if iterations_text == "auto" else int(iterations_text)
    preserve = _one(fields, "preserve_colors", "none")
    if preserve not in PRESERVE:
        raise FormError(f"colour control must be one of {', '.join(PRESERVE)}")
    blend_text = _one(fields, "blend")
    blend = None
    if blend_text:
        try:
            blend = tuple(float(part) for part in blend_text.split(","))
        except ValueError:
            raise FormError("blend weights must be numbers separated by commas") from None
        if len(blend) != len(styles):
            raise FormError(f"{len(blend)} blend weights for {len(styles)} style images")
        from normstyle.style.targets import blend_weights

        blend_weights(blend, len(styles))  # all zero, negative …: refused now, not mid-run
    seed = random.randrange(2**31)
    options = StyleOptions(
        long_side=size,
        iterations=iterations,
        preserve_colors=preserve,  # type: ignore[arg-type]
        style_blend=blend,
        masks=tuple(mask_arrays) if mask_arrays else None,
        seed=seed,
        progress=False,
    )
    stem = content_name.removeprefix("builtin:").removeprefix("./").rsplit(".", 1)[0] or "image"
    output = f"{stem}-stylised.png"
    command = ["normstyle", "stylize", content_name, *style_names, "-o", output]
    command += ["--size", str(size), "--seed", str(seed)]
    if iterations != "auto":
        command += ["--iterations", str(iterations)]
    if preserve != "none":
        command += ["--preserve-colors", preserve]
    if blend is not None:
        command += ["--style-blend", ",".join(f"{w:g}" for w in blend)]
    if masks:
        command += ["--masks", *(_safe(name) for name, _ in masks)]
    settings_record = {
        "content": content_name,
        "styles": style_names,
        "size": size,
        "iterations": iterations,
        "preserve_colors": preserve,
        "style_blend": blend,
        "masks": [_safe(name) for name, _ in masks],
        "seed": seed,
        "output": output,
    }
    from normstyle.registry import for_stylization

    preprocessing = for_stylization(options.weights, options.normalize).preprocessing

    def work(on_step: Any, check: Any) -> Any:
        return run(
            content, styles, options, on_step=on_step, models=settings.models, interrupt=check
        ).image

    def preview(x: Any) -> Any:
        return preprocessing.tensor_to_image(x.detach().float().cpu())

    if isinstance(content, np.ndarray) and max(content.shape[:2]) < 16:
        raise OptionError("the content image is too small")
    return Job(
        run=work,
        settings=settings_record,
        command=" ".join(shlex.quote(part) for part in command),
        preview=preview,
    )
