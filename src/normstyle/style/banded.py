"""The Gatys loss and its pixel gradient computed band by band, exactly (for images larger than
memory; see :mod:`normstyle.style.bands` for why bands with halos give the whole image's features).

The loss is a sum of per-position terms (content) and of functions of Gram matrices, which are
sums over positions of outer products. So, for an image cut into bands:

1. **First pass, no gradients:** each band's own features are added into the Gram matrices (and
   the content sums); with every band done, these are the whole image's Grams, and the loss is
   known exactly.
2. **Second pass:** given the whole image's Grams, the gradient with respect to each position's
   features is local: ∂E_l/∂F = t ⊙ (G − A)_sym F / (N² m²) for a style layer (t ≡ 1 and m = M
   without a mask) and α (F − P) for the content. Each band runs forward again, these gradients
   of its own rows are propagated back to its input pixels (its halo included: the own rows
   depend on them), and the bands' pixel gradients add up to the whole image's.

Every band runs the network twice (the price of never holding the whole image's activations), so
an iteration costs about 1.5 times an unbanded one, plus the halos' share of rows.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from normstyle.nets.vgg import VGG
from normstyle.runtime.precision import Runtime
from normstyle.style.bands import Band, BandLayout, band_layout, chain_geometry, feature_sizes
from normstyle.style.losses import (
    GatysLoss,
    LossTerms,
    full_precision,
    gram_matrix,
    total_variation,
)
from normstyle.style.precision import GradientScale, network_features


@dataclass
class _StyleTerm:
    """One Gram comparison: a layer, its target (scaled to the region's size), the position
    weights t over the whole feature map (None: all 1) and its factor in the style loss."""

    layer: str
    target: torch.Tensor
    weights: torch.Tensor | None
    factor: float


def _style_terms(loss: GatysLoss) -> list[_StyleTerm]:
    if not loss.regions:
        return [
            _StyleTerm(name, loss.style_grams[name], None, weight)
            for name, weight in loss.style_layers.items()
        ]
    terms = []
    for region, factors in zip(loss.regions, loss._region_factors):
        for name, factor in factors.items():
            if factor:
                terms.append(
                    _StyleTerm(name, region.grams[name], region.position_weights[name], factor)
                )
    return terms


def band_features(
    model: VGG,
    x: torch.Tensor,
    layers: list[str],
    runtime: Runtime,
    layout: BandLayout,
    sizes: dict[str, tuple[int, int]],
    with_graph: Callable[[int], bool] = lambda index: False,
) -> Iterator[tuple[Band, torch.Tensor, dict[str, torch.Tensor]]]:
    """For each tile: the tile, its input (a slice of ``x``; a leaf that takes a gradient where
    ``with_graph(index)``) and its own part of each layer's features (in the runtime's
    precision, cropped from the tile's maps; with their graph where ``with_graph``).
    ``sizes``: each layer's (rows, columns) over the whole image."""
    for index, band in enumerate(layout.bands):
        piece = x[:, :, band.input_start : band.input_stop, band.input_left : band.input_right]
        graph = with_graph(index)
        if graph:
            piece = piece.detach().requires_grad_(True)
        with torch.set_grad_enabled(graph):
            features = network_features(model, piece, layers, runtime)
        owned = {}
        for name in layers:
            (rows, columns), _ = layout.owned(band, name, sizes[name])
            owned[name] = features[name][:, :, rows, columns]
        yield band, piece, owned


def _rows(feature_map: torch.Tensor, layout: BandLayout, band: Band, name: str) -> torch.Tensor:
    """The tile's own part of a whole-image map (a target, a mask's weights)."""
    _, (rows, columns) = layout.owned(band, name, tuple(feature_map.shape[2:]))
    return feature_map[:, :, rows, columns]


def _positions(terms: list[_StyleTerm], sizes: dict[str, tuple[int, int]]) -> list[float]:
    return [
        float(term.weights.sum())
        if term.weights is not None
        else sizes[term.layer][0] * sizes[term.layer][1]
        for term in terms
    ]


@dataclass
class _FirstPass:
    """What the first pass leaves: the loss terms, each style term's whole-image Gram, and the
    last tile with its graph (kept for the second pass, which then need not run it again)."""

    terms: LossTerms
    grams: list[torch.Tensor]
    kept: tuple[Band, torch.Tensor, dict[str, torch.Tensor]] | None


def _first_pass(
    model: VGG,
    loss: GatysLoss,
    x: torch.Tensor,
    runtime: Runtime,
    layout: BandLayout,
    sizes: dict[str, tuple[int, int]],
    keep_last: bool,
) -> _FirstPass:
    terms = _style_terms(loss)
    grams: list[torch.Tensor | None] = [None] * len(terms)
    content = {name: torch.zeros((), device=x.device) for name in loss.content_layers}
    last = len(layout.bands) - 1
    kept = None
    for band, piece, owned in band_features(
        model, x, loss.layers, runtime, layout, sizes, lambda index: keep_last and index == last
    ):
        if keep_last and band is layout.bands[last]:
            kept = (band, piece, owned)
        with torch.no_grad():
            for name in loss.content_layers:
                target = _rows(loss.content_targets[name], layout, band, name)
                difference = full_precision(owned[name]) - target
                content[name] = content[name] + 0.5 * difference.square().sum()
            for index, term in enumerate(terms):
                features = full_precision(owned[term.layer])
                if term.weights is not None:
                    features = features * _rows(term.weights, layout, band, term.layer).sqrt()
                gram = gram_matrix(features)
                grams[index] = gram if grams[index] is None else grams[index] + gram
    whole = [g for g in grams if g is not None]
    style: dict[str, torch.Tensor] = {}
    for term, gram, size in zip(terms, whole, _positions(terms, sizes)):
        channels = gram.shape[-1]
        value = ((gram - term.target) / size).square().sum() / (4.0 * channels**2)
        weighted = term.factor * value
        style[term.layer] = style[term.layer] + weighted if term.layer in style else weighted
    zero = torch.zeros((), device=x.device)
    style = {
        name: style[name] / total if name in style and total > 0 else zero
        for name, total in loss.style_layers.items()
    }
    total = loss.content_weight * sum(
        (weight * content[name] for name, weight in loss.content_layers.items()), zero
    ) + loss.style_weight * sum((loss.style_layers[n] * v for n, v in style.items()), zero)
    tv = None
    if loss.tv_weight:
        tv = total_variation(x.detach())
        total = total + loss.tv_weight * tv
    return _FirstPass(LossTerms(total=total, content=content, style=style, tv=tv), whole, kept)


def banded_grams(
    model: VGG,
    loss: GatysLoss,
    x: torch.Tensor,
    runtime: Runtime,
    layout: BandLayout,
    sizes: dict[str, tuple[int, int]],
) -> tuple[LossTerms, list[torch.Tensor]]:
    """The first pass alone: the loss terms at ``x`` and each style term's whole-image Gram."""
    first = _first_pass(model, loss, x, runtime, layout, sizes, keep_last=False)
    return first.terms, first.grams


def banded_backward(
    model: VGG,
    loss: GatysLoss,
    x: torch.Tensor,
    runtime: Runtime,
    layout: BandLayout,
    sizes: dict[str, tuple[int, int]],
    scale: GradientScale | None = None,
) -> tuple[LossTerms, torch.Tensor]:
    """The loss terms at ``x`` and their gradient with respect to ``x``, tile by tile (both
    passes). The first pass keeps the graph of its last tile, so the second runs that one tile
    backward at once instead of forward again (with n tiles, 2 − 1/n forward passes per
    iteration instead of 2). In fp16 a gradient that overflows is recomputed at a smaller
    scale."""
    scale = scale or GradientScale()
    first = _first_pass(model, loss, x, runtime, layout, sizes, keep_last=True)
    terms = first.terms
    if not torch.isfinite(terms.total):
        return terms, torch.full_like(x, float("nan"))
    style_terms = _style_terms(loss)
    # Per style term: the factor that turns its features into its gradient, (G − A)_sym scaled.
    slopes = []
    for term, gram, size in zip(style_terms, first.grams, _positions(style_terms, sizes)):
        difference = (gram - term.target) / size
        symmetric = 0.5 * (difference + difference.mT)
        channels = gram.shape[-1]
        slopes.append(symmetric * (loss.style_weight * term.factor / (channels**2 * size)))

    def backward(band: Band, piece: torch.Tensor, owned: dict[str, torch.Tensor]) -> None:
        surrogate = torch.zeros((), device=x.device)
        for name, weight in loss.content_layers.items():
            target = _rows(loss.content_targets[name], layout, band, name)
            features = full_precision(owned[name])
            pull = (loss.content_weight * weight) * (features.detach() - target)
            surrogate = surrogate + (pull * features).sum()
        for term, slope in zip(style_terms, slopes):
            features = full_precision(owned[term.layer])
            batch, channels = features.shape[:2]
            rows = features.detach().permute(0, 2, 3, 1).reshape(batch, -1, channels)
            pull = (rows @ slope).reshape(batch, *features.shape[2:], channels)
            pull = pull.permute(0, 3, 1, 2)
            if term.weights is not None:
                pull = pull * _rows(term.weights, layout, band, term.layer)
            surrogate = surrogate + (pull * features).sum()
        (surrogate * scale.value).backward()
        assert piece.grad is not None
        grad[:, :, band.input_start : band.input_stop, band.input_left : band.input_right] += (
            piece.grad
        )

    kept, first.kept = first.kept, None
    for _ in range(scale.max_retries):
        grad = torch.zeros_like(x)
        if kept is not None:
            backward(*kept)
            # Its features (and their graph's saved tensors) go now, not after the other tiles.
            count = len(layout.bands) - 1
            kept = None
        else:
            count = len(layout.bands)
        # The kept tile is the last one: the others run forward again, with their graphs.
        tiles = band_features(model, x, loss.layers, runtime, layout, sizes, lambda index: True)
        for band, piece, owned in itertools.islice(tiles, count):
            backward(band, piece, owned)
        if runtime.precision != "fp16" or torch.isfinite(grad).all():
            if runtime.precision == "fp16":
                scale.succeeded()
            break
        scale.overflowed()
    if scale.value != 1.0:
        grad /= scale.value
    if loss.tv_weight:
        leaf = x.detach().requires_grad_(True)
        (tv_grad,) = torch.autograd.grad(loss.tv_weight * total_variation(leaf), leaf)
        grad += tv_grad
    return terms, grad


@torch.no_grad()
def banded_targets(
    model: VGG,
    x: torch.Tensor,
    runtime: Runtime,
    tile: tuple[int, int],
    keep: list[str],
    grams: dict[str, torch.Tensor | None],
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """The loss targets of an image computed band by band without gradients: the whole feature
    maps of the layers in ``keep`` (assembled from the bands' own rows, fp32) and the Gram of
    each layer in ``grams`` (its value: the position weights t over the whole map, or None),
    summed over the bands — each equal to the whole image's."""
    layers = list(dict.fromkeys([*keep, *grams]))
    geometry = chain_geometry(model, layers)
    height, width = x.shape[2:]
    layout = band_layout(height, tile[0], geometry, width, tile[1])
    sizes = feature_sizes(model, layers, height, width)
    kept: dict[str, torch.Tensor] = {}
    sums: dict[str, torch.Tensor] = {}
    for band, _, owned in band_features(model, x, layers, runtime, layout, sizes):
        for name in keep:
            features = full_precision(owned[name])
            if name not in kept:
                kept[name] = features.new_zeros((x.shape[0], features.shape[1], *sizes[name]))
            _, (rows, columns) = layout.owned(band, name, sizes[name])
            kept[name][:, :, rows, columns] = features
        for name, weights in grams.items():
            features = full_precision(owned[name])
            if weights is not None:
                features = features * _rows(weights, layout, band, name).sqrt()
            gram = gram_matrix(features)
            sums[name] = sums[name] + gram if name in sums else gram
    return kept, sums
