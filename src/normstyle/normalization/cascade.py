"""Mean-activation normalisation of a ReLU conv net (Gatys et al. 2016, §2), in cascade.

For conv layer l with filters i and per-filter mean activation μ_i^l (measured after its ReLU,
over a set of images and all positions, on the *original* network), with D^{l-1} = diag(μ^{l-1})
and D^0 = I:

    W_i^l ← W_i^l · D^{l-1} / μ_i^l        b_i^l ← b_i^l / μ_i^l

Then every normalised feature map equals the original divided by μ_i^l exactly, because ReLU,
zero padding, max and average pooling all commute with a positive per-channel scale. A classifier
head absorbs the last factor (its first Linear multiplies each input column by the μ of the channel
it came from), so logits are unchanged. The "naive" method divides by μ_i^l only: layer l then sees
inputs divided by μ^{l-1}, which changes W·P + b by a different factor per input channel and can
flip the sign before the ReLU — a different function (kept for teaching and comparison).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from normstyle.errors import OptionError
from normstyle.normalization.layout import fold_batch_norm, get_layer, plan
from normstyle.normalization.means import FilterMeans

Method = Literal["cascade", "naive"]


def normalize(model: nn.Module, means: FilterMeans, method: Method = "cascade") -> nn.Module:
    """A normalised copy of ``model`` (batch norm folded first).

    ``cascade`` (default) is exact: features become original/μ and logits are unchanged.
    ``naive`` divides each layer by its own μ only (not an equivalent network; for teaching).
    """
    if method not in ("cascade", "naive"):
        raise OptionError(f"method must be 'cascade' or 'naive', not '{method}'")
    normalized = fold_batch_norm(model)
    layout = plan(normalized)
    scales = means.scales()
    missing = [step.conv for step in layout.steps if step.conv not in scales]
    if missing:
        raise OptionError(f"no means for layer {missing[0]}")
    incoming: torch.Tensor | None = None  # D^{l-1}: the scale of the channels flowing in
    for step in layout.steps:
        conv = get_layer(normalized, step.conv)
        assert isinstance(conv, nn.Conv2d)
        s = scales[step.conv]
        if s.shape != (conv.out_channels,):
            raise OptionError(f"{step.conv}: {s.numel()} means for {conv.out_channels} filters")
        weight = conv.weight.double()
        if method == "cascade" and incoming is not None:
            weight = weight * incoming.view(1, -1, 1, 1)  # undo the previous layer's scaling
        conv.weight.data = (weight / s.view(-1, 1, 1, 1)).to(conv.weight.dtype)
        if conv.bias is not None:
            conv.bias.data = (conv.bias.double() / s).to(conv.bias.dtype)
        incoming = s
    if layout.head is not None and method == "cascade" and incoming is not None:
        head = get_layer(normalized, layout.head)
        assert isinstance(head, nn.Linear)
        # Flatten orders inputs channel-major: channel c feeds columns c·S … c·S + S − 1.
        column_scale = incoming.repeat_interleave(layout.head_spatial)
        head.weight.data = (head.weight.double() * column_scale.view(1, -1)).to(head.weight.dtype)
    return normalized
