"""The files a stylisation writes: its output and intermediate images checked before the run,
where ``save_every`` writes, and the callback that does."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from normstyle.errors import OptionError
from normstyle.io.builtin import is_builtin
from normstyle.io.files import check_target, same_file
from normstyle.io.save import check_output_path, save_image
from normstyle.io.tensors import rgb_to_image
from normstyle.nets.preprocessing import Preprocessing
from normstyle.style.loop import StepCallback
from normstyle.style.losses import LossTerms
from normstyle.style.options import StyleOptions


def check_outputs(
    options: StyleOptions, output: str | os.PathLike[str], inputs: Sequence[object] = ()
) -> Path:
    """Check, before any work, that ``output`` can be written as an image, is none of the
    ``inputs`` (paths; other sources are ignored), and that every intermediate image
    ``save_every`` will write can be written and does not exist yet. Returns ``output``."""
    output = check_output_path(output)
    for source in inputs:
        if not isinstance(source, (str, os.PathLike)) or is_builtin(source):
            continue
        if same_file(output, source):
            raise OptionError(f"-o {output} is one of the input images: choose another name")
    for path in intermediate_paths(options, output):
        if os.path.lexists(path):  # a link to nowhere would be replaced, so it counts too
            raise OptionError(
                f"{path} exists and --save-every would overwrite it: move it, or choose another -o"
            )
        check_target(path)
    return output


def intermediate_paths(options: StyleOptions, output: str | Path) -> list[Path]:
    """Where ``save_every`` writes: ``OUT_<step>.<ext>`` beside ``output`` (not at the end)."""
    if not options.save_every:
        return []
    output = Path(output)
    total = sum(options.level_iterations())
    width = len(str(total))
    return [
        output.with_name(f"{output.stem}_{step:0{width}d}{output.suffix}")
        for step in range(options.save_every, total, options.save_every)
    ]


def intermediate_saver(
    options: StyleOptions,
    prep: Preprocessing,
    output: str | Path | None,
    offset: int = 0,
    written: list[Path] | None = None,
    recolour: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> StepCallback | None:
    """The callback that writes every ``save_every``-th image next to ``output`` (None if none
    is asked for); ``recolour`` maps its RGB as the final image's is (colour control)."""
    if not options.save_every or output is None:
        return None
    paths = {
        int(path.stem.rpartition("_")[2]): path for path in intermediate_paths(options, output)
    }

    def save(iteration: int, x: torch.Tensor, _terms: LossTerms) -> None:
        path = paths.get(offset + iteration)
        if path is not None:
            image = x.float().cpu()
            if recolour is None:
                save_image(prep.tensor_to_image(image), path)
            else:
                save_image(rgb_to_image(recolour(prep.to_rgb(image).clamp(0, 1))), path)
            if written is not None:
                written.append(path)

    return save
