"""Gatys et al. style transfer: losses, options and the optimisation loop."""

from normstyle.style.losses import (
    GatysLoss,
    content_loss,
    gram_matrix,
    style_layer_loss,
    total_variation,
)
from normstyle.style.options import StyleOptions
from normstyle.style.transfer import Stylization, run, stylize

__all__ = [
    "GatysLoss",
    "StyleOptions",
    "Stylization",
    "content_loss",
    "gram_matrix",
    "run",
    "style_layer_loss",
    "stylize",
    "total_variation",
]
