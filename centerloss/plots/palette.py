"""The one palette: the colour of each class in every picture cl draws, `cl plot`'s files and
the live view in a window or on the terminal alike."""
from __future__ import annotations

import matplotlib
import numpy as np


def class_colors(n: int) -> np.ndarray:
    """n distinct RGBA colours in [0, 1]: tab10 while it lasts, then tab20, then an even sweep
    of turbo."""
    cmap = "tab10" if n <= 10 else "tab20" if n <= 20 else "turbo"
    colors = matplotlib.colormaps[cmap]
    return colors(np.arange(n)) if n <= 20 else colors(np.linspace(0, 1, n))


def class_rgb(n: int) -> list[tuple[int, int, int]]:
    """The same colours as 8-bit RGB, for a terminal."""
    return [tuple(int(round(255 * v)) for v in c[:3]) for c in class_colors(n)]
