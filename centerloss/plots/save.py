"""Figure files: one check of the format a file name asks for, and one atomic save."""
from __future__ import annotations

import io
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from centerloss.errors import FigureFormatError
from centerloss.store.files import atomic_write, check_output

DPI = 100


def figure_formats() -> list[str]:
    return sorted(FigureCanvasAgg(Figure()).get_supported_filetypes())


def check_format(path: Path | str) -> str:
    """The format a plot file gets from its extension, or a FigureFormatError (a PlotError)
    naming those that work."""
    fmt = Path(path).suffix.lower().lstrip(".")
    check_output(path)
    if fmt not in figure_formats():
        raise FigureFormatError(f"{path}: cannot write a figure as {fmt or 'a file without extension'!r}; "
                                f"use one of: {', '.join(figure_formats())}")
    return fmt


def save_figure(fig: Figure, path: Path | str) -> Path:
    """Write fig in the format of path's extension, atomically."""
    path = Path(path)
    fmt = check_format(path)
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=DPI, facecolor="white")
    atomic_write(path, buf.getvalue())
    return path
