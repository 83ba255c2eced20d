"""Gatys et al. style transfer: every default (``options``), the losses (``losses``), colour
control (``color``), the levels, targets, start image, loop and pixel optimiser of a run
(``levels``, ``targets``, ``initial``, ``loop``, ``precision``, ``optimizer``, ``stopping``),
intermediate
images (``intermediates``), and the orchestration (``transfer``).

May import: ``normstyle.errors``, ``io``, ``nets``, ``runtime`` and ``registry`` (the weights
a stylisation uses).
"""

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
