"""Saved networks: weights as safetensors (never a pickle) with their provenance as JSON — in
the safetensors header (key ``normstyle``) and, for people, in a ``.json`` file beside it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save as safetensors_bytes

from normstyle.errors import OptionError
from normstyle.images import atomic_write


def save_network(
    model: torch.nn.Module, path: str | Path, meta: dict[str, Any]
) -> tuple[Path, Path]:
    """Write ``model``'s state dict to ``path`` (.safetensors) and ``meta`` to ``path``.json,
    each atomically. Returns both paths."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise OptionError(f"{path}: the output must end in .safetensors")
    state = {key: value.detach().cpu().contiguous() for key, value in model.state_dict().items()}
    text = json.dumps(meta, indent=1)
    payload = safetensors_bytes(state, metadata={"normstyle": json.dumps(meta)})
    sidecar = path.with_suffix(".json")
    atomic_write(path, lambda handle: handle.write(payload))
    atomic_write(sidecar, lambda handle: handle.write(text.encode() + b"\n"))
    return path, sidecar
