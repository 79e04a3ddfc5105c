"""Figures drawn outside pyplot: the global matplotlib backend is never touched.

A :class:`matplotlib.figure.Figure` made here has an Agg canvas of its own
(:class:`~matplotlib.backends.backend_agg.FigureCanvasAgg`), so it draws, lays itself out
and is written as a PNG whatever backend a notebook or script has chosen, and importing
preattn neither switches that backend nor imports ``matplotlib.pyplot``. Nothing keeps a
reference to the figure: it is freed with its last reference, with no ``plt.close``.
"""

from __future__ import annotations

from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["new_figure"]


def new_figure(**kwargs: Any) -> Figure:
    """``Figure(**kwargs)`` (``figsize``, ``layout``, ...) on its own Agg canvas."""
    fig = Figure(**kwargs)
    FigureCanvasAgg(fig)
    return fig
