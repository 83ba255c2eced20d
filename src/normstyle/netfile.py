"""Saved networks: weights as safetensors (never a pickle) with their provenance as JSON — in
the safetensors header (key ``normstyle``) and, for people, in a ``.json`` file beside it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save as safetensors_bytes

from normstyle.errors import OptionError
from normstyle.images import atomic_write_many, check_target


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
    sidecar = sidecar_path(path)
    # Both files or neither (a sidecar that cannot be written leaves no orphan network).
    atomic_write_many(
        [
            (path, lambda handle: handle.write(payload)),
            (sidecar, lambda handle: handle.write(text.encode() + b"\n")),
        ]
    )
    return path, sidecar


def sidecar_path(path: str | Path) -> Path:
    """The human-readable JSON metadata file written beside a saved network."""
    return Path(path).with_suffix(".json")


def check_network_targets(path: str | Path) -> Path:
    """Fail before any work if the network or its sidecar cannot be written."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise OptionError(f"{path}: the output must end in .safetensors")
    check_target(path)
    check_target(sidecar_path(path))
    return path
