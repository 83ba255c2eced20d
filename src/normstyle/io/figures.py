"""Figures without a screen, and without touching the user's matplotlib backend.

Each figure is a :class:`matplotlib.figure.Figure` with its own Agg canvas, never a pyplot
figure: a notebook user who imports normstyle keeps the backend they chose (``matplotlib.use``
switches it for the whole process), and nothing is left in pyplot's list of open figures.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from normstyle.io.files import atomic_write


def new_figure(**options: Any) -> Any:
    """A new :class:`~matplotlib.figure.Figure` (``figsize`` …) on its own Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(**options)
    FigureCanvasAgg(figure)
    return figure


def subplots(nrows: int = 1, ncols: int = 1, **kwargs: Any) -> tuple[Any, Any]:
    """Like ``pyplot.subplots``: a new figure on its own Agg canvas, and its axes.
    ``figsize`` (and other Figure options) go to the figure, the rest to ``Figure.subplots``."""
    figure_options = {k: kwargs.pop(k) for k in ("figsize", "dpi", "layout") if k in kwargs}
    figure = new_figure(**figure_options)
    return figure, figure.subplots(nrows, ncols, **kwargs)


def png_bytes(fig: Any, dpi: int = 110) -> bytes:
    """The figure rendered as PNG."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def save_figure(fig: Any, path: Path, dpi: int = 110) -> Path:
    """Write ``fig`` as a PNG at ``path`` atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = png_bytes(fig, dpi)
    return atomic_write(path, lambda handle: handle.write(data))
