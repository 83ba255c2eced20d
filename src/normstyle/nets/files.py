"""Weights files on disk, read and written: PyTorch files (``.pth``/``.pt``, unpickled with
``weights_only=True``) and safetensors, with normstyle's metadata (key ``normstyle``, a JSON
object). Saved networks are written as safetensors (never a pickle), their provenance in the
header and, for people, in a ``.json`` file beside it. What the layer names mean is
:mod:`normstyle.nets.local`'s job."""

from __future__ import annotations

import json
import pickle
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save as safetensors_bytes

from normstyle.errors import InputError, OptionError
from normstyle.io.files import atomic_write_many, check_target, open_regular_file, same_file
from normstyle.nets.preprocessing import PREPROCESSINGS


def read_torch_file(path: Path) -> Mapping[str, torch.Tensor]:
    """A state dict from a ``torch.save`` file, unpickled with ``weights_only=True`` (tensors
    and plain containers only: a file that needs more is refused, never executed)."""
    with open_regular_file(path) as handle:
        head = handle.read(4)
        handle.seek(0)
        # torch.save writes a zip archive (PK\3\4); older versions a pickle (protocol ≥ 2: \x80).
        if not (head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"):
            raise InputError(
                f"{path}: not a PyTorch weights file (neither a zip archive nor a pickle)"
            )
        try:
            with warnings.catch_warnings():
                # torch warns about pickles of other protocols before failing or succeeding.
                warnings.filterwarnings("ignore", "Detected pickle protocol", UserWarning)
                raw = torch.load(handle, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:
            raise InputError(
                f"{path}: refused: it holds Python objects other than tensors, and unpickling"
                " those could run code (normstyle only loads plain state dicts)"
            ) from None
        except Exception as error:  # zip and pickle errors come in many types
            raise InputError(
                f"{path}: damaged, truncated or not a weights file ({type(error).__name__}:"
                f" {_first_line(error)})"
            ) from None
    if isinstance(raw, Mapping) and "state_dict" in raw and isinstance(raw["state_dict"], Mapping):
        raw = raw["state_dict"]  # a training checkpoint
    if not isinstance(raw, Mapping) or not all(isinstance(v, torch.Tensor) for v in raw.values()):
        raise InputError(f"{path}: expected a dict of tensors (a state dict)")
    return raw


def read_weights_file(path: Path) -> tuple[Mapping[str, torch.Tensor], dict[str, str]]:
    """A state dict and its string metadata (safetensors header; empty for .pth)."""
    if path.suffix == ".safetensors":
        from safetensors import safe_open

        open_regular_file(path).close()  # a fifo or device is refused, not waited on
        try:
            with safe_open(str(path), framework="pt") as handle:
                metadata = dict(handle.metadata() or {})
                return {key: handle.get_tensor(key) for key in handle.keys()}, metadata  # noqa: SIM118
        except Exception as error:
            raise InputError(
                f"{path}: not a readable safetensors file ({_first_line(error)})"
            ) from None
    return read_torch_file(path), {}


def file_metadata(path: Path, metadata: Mapping[str, str]) -> dict[str, Any]:
    """normstyle's own metadata of a weights file (safetensors key ``normstyle``, a JSON
    object), or {} where there is none."""
    text = metadata.get("normstyle")
    if text is None:
        return {}
    try:
        info = json.loads(text)
    except (json.JSONDecodeError, TypeError):
        raise InputError(f"{path}: its 'normstyle' metadata is not valid JSON") from None
    if not isinstance(info, dict):
        kind = {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
            type(info), "a number"
        )
        raise InputError(f"{path}: its 'normstyle' metadata is {kind}, not a JSON object")
    preprocessing = info.get("preprocessing")
    if preprocessing is not None and preprocessing not in PREPROCESSINGS:
        raise InputError(
            f"{path}: its metadata names an unknown preprocessing ({preprocessing!r}; known:"
            f" {', '.join(PREPROCESSINGS)})"
        )
    return info


def check_finite(state: Mapping[str, torch.Tensor], where: str) -> None:
    """Raise :class:`InputError` naming the first tensor that is not real floating-point
    (complex, integer or boolean weights; batch norm's step counter excepted) or that holds NaN
    or infinite values."""
    for key, value in state.items():
        if not value.is_floating_point():
            if key.endswith("num_batches_tracked"):
                continue
            kind = str(value.dtype).removeprefix("torch.")
            raise InputError(f"{where}: {key} holds {kind} values, not real-valued weights")
        if not bool(torch.isfinite(value).all()):
            raise InputError(f"{where}: {key} has values that are not finite (NaN or inf)")


def save_network(
    model: torch.nn.Module, path: str | Path, meta: dict[str, Any]
) -> tuple[Path, Path]:
    """Write ``model``'s state dict to ``path`` (.safetensors) and ``meta`` to ``path``.json,
    each atomically. Returns both paths."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise OptionError(f"{path}: the output must be a file name ending in .safetensors")
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


def check_network_targets(path: str | Path, inputs: Sequence[str | Path] = ()) -> Path:
    """Fail before any work if the network or its sidecar cannot be written, or would replace
    one of the ``inputs`` (the weights file it is made from)."""
    if not str(path):
        raise OptionError("the output file name is empty")
    path = Path(path)
    if path.suffix != ".safetensors" or path.name == ".safetensors":
        raise OptionError(f"{path}: the output must be a file name ending in .safetensors")
    for target in (path, sidecar_path(path)):
        for source in inputs:
            if same_file(target, source):
                raise OptionError(f"-o {path} would overwrite the input {source}: choose another")
        check_target(target)
    return path


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:200] if text else type(error).__name__
