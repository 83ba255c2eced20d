"""torchvision's ImageNet VGG weights: their published URLs, the download into torch hub's cache
(hash prefix checked), and their layer names turned into ours."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from normstyle.errors import InputError
from normstyle.nets.source import StateDict
from normstyle.nets.vgg import torchvision_names

TORCHVISION_URLS = {
    "vgg11": "https://download.pytorch.org/models/vgg11-8a719046.pth",
    "vgg13": "https://download.pytorch.org/models/vgg13-19584684.pth",
    "vgg16": "https://download.pytorch.org/models/vgg16-397923af.pth",
    "vgg19": "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth",
    "vgg11_bn": "https://download.pytorch.org/models/vgg11_bn-6002323d.pth",
    "vgg13_bn": "https://download.pytorch.org/models/vgg13_bn-abd245e5.pth",
    "vgg16_bn": "https://download.pytorch.org/models/vgg16_bn-6c64b313.pth",
    "vgg19_bn": "https://download.pytorch.org/models/vgg19_bn-c79401a0.pth",
}


def hub_checkpoint(url: str) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


def load_torchvision(arch: str) -> StateDict:
    url = TORCHVISION_URLS[arch]
    try:
        # check_hash: the file name's 8-hex suffix must prefix the download's sha256.
        raw = torch.hub.load_state_dict_from_url(
            url, map_location="cpu", progress=True, check_hash=True, weights_only=True
        )
    except (OSError, RuntimeError) as error:
        raise InputError(f"cannot get {url}: {' '.join(str(error).split())}") from None
    return from_torchvision_names(raw, arch, head=True)


def from_torchvision_names(raw: Mapping[str, torch.Tensor], arch: str, head: bool) -> StateDict:
    """Rename a torchvision VGG state dict (``features.0.weight``) to ours (``conv1_1.weight``)."""
    ours_by_theirs = {theirs: ours for ours, theirs in torchvision_names(arch, head).items()}
    state: StateDict = {}
    for key, value in raw.items():
        module, _, attribute = key.rpartition(".")
        if module not in ours_by_theirs:
            raise InputError(f"unexpected entry '{key}' for {arch} in torchvision naming")
        state[f"{ours_by_theirs[module]}.{attribute}"] = value
    return state
