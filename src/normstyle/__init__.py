"""normstyle: Gatys et al. neural style transfer on a properly normalised VGG-19.

The public names are imported on first use (PEP 562), so that ``import normstyle`` — and the
``normstyle`` command before it parses its arguments — does not pay for torch until it needs it.
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False  # typing's own constant, without importing typing at start-up

__version__ = "0.2.0"

_EXPORTS = {
    "VGG": "normstyle.nets",
    "StyleOptions": "normstyle.style",
    "stylize": "normstyle.style",
    "WEIGHT_SOURCES": "normstyle.registry",
    "get_weights": "normstyle.registry",
    "serve": "normstyle.web",
}

if TYPE_CHECKING:
    from normstyle.nets import VGG
    from normstyle.registry import WEIGHT_SOURCES, get_weights
    from normstyle.style import StyleOptions, stylize
    from normstyle.web import serve


def __getattr__(name: str) -> object:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'normstyle' has no attribute '{name}'")


__all__ = [
    "VGG",
    "WEIGHT_SOURCES",
    "StyleOptions",
    "__version__",
    "get_weights",
    "serve",
    "stylize",
]
