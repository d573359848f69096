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


# A 16-colour terminal (rich's ColorSystem.STANDARD) shows tab10 as fewer colours: 5 and 7 both
# grey, 0 and 9 both cyan. These ten ANSI colours stand in for tab10's, in its order (blue,
# orange as yellow, green, red, purple as magenta, brown as bright red, pink as bright magenta,
# grey, olive as bright yellow, cyan), and leave out black and white, which vanish on one
# background or the other. Classes past ten repeat them with another glyph (GLYPHS).
STANDARD10 = (4, 3, 2, 1, 5, 9, 13, 8, 11, 6)
GLYPHS = "+x*o#%@&"
FEW_COLORS = ("standard", "windows")      # rich's names of the 16- and 8-colour systems
Color = tuple[int, int, int] | int         # RGB, or an ANSI colour number


def class_rgb(n: int, color_system: str | None = "truecolor") -> list[Color]:
    """The same colours as 8-bit RGB, for a terminal; on a 16-colour one, STANDARD10's ANSI
    numbers, repeated past ten (class_glyphs tells those apart)."""
    if color_system in FEW_COLORS:
        return [STANDARD10[i % len(STANDARD10)] for i in range(n)]
    return [tuple(int(round(255 * v)) for v in c[:3]) for c in class_colors(n)]


def class_glyphs(n: int, color_system: str | None = "truecolor") -> list[str]:
    """How each class's points are drawn on a terminal: braille dots, or on a 16-colour terminal
    past the tenth class, whose colour another class has, a glyph of its own per ten classes."""
    if color_system not in FEW_COLORS:
        return ["braille"] * n
    return ["braille" if i < len(STANDARD10) else GLYPHS[(i // len(STANDARD10) - 1) % len(GLYPHS)]
            for i in range(n)]
