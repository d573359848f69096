"""`cl train --live-window`: the seed blog's plt.ion() window, redrawn at the end of each epoch
with the live view's recent training features, while training goes on.

pyplot is imported here only: the rest of cl draws on Agg canvases and never needs a display."""
from __future__ import annotations

import os
import sys
from typing import Sequence

import numpy as np

from centerloss.plots import class_colors, draw_features, legend_handles
from centerloss.plots.snapshots import Frame

from .liveview import cloud_limits


def display_problem() -> str | None:
    """Why no window can open here, or None when one can: matplotlib then has an interactive
    backend (Tk, Qt, GTK, macOS) and a display to put it on."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return ("--live-window needs a display, and neither DISPLAY nor WAYLAND_DISPLAY is set "
                "(over SSH, use ssh -X, or the terminal view: cl train --live)")
    import matplotlib.pyplot as plt
    backend = plt.get_backend().lower()
    if backend in ("agg", "pdf", "ps", "svg", "cairo", "template") or "inline" in backend:
        return (f"--live-window needs an interactive matplotlib backend, and {backend!r} is not one; "
                f"install tkinter or PyQt, or set MPLBACKEND")
    return None


class FeatureWindow:
    """One figure window, updated by show(); poll() lets it answer the window system (expose,
    resize) between epochs. Neither blocks: pyplot's event loop runs only inside these calls."""

    def __init__(self, classes: Sequence[str], title: str):
        import matplotlib.pyplot as plt
        plt.ion()
        self.plt = plt
        self.classes = list(classes)
        self.colors = class_colors(len(classes))
        self.fig = plt.figure(figsize=(8.5, 6.5))
        self.fig.canvas.manager.set_window_title(title)
        self.fig.text(0.5, 0.5, "the first epoch's features appear here when it ends",
                      ha="center", va="center", color="dimgray")
        plt.show(block=False)
        self.poll()

    def show(self, points: np.ndarray, labels: np.ndarray, centers: np.ndarray, epoch: int,
             note: str, metrics: dict) -> None:
        self.fig.clear()
        ax = self.fig.add_axes((0.09, 0.09, 0.64, 0.8))
        lim = cloud_limits(points, centers)
        frame = Frame(epoch, points, labels, centers, metrics, 1.0)
        draw_features(ax, frame, self.colors, ((lim.x0, lim.x1), (lim.y0, lim.y1)), bool(note))
        accuracy = metrics.get("test_accuracy")
        ax.set_title(f"epoch {epoch}: the last {len(points):,} training features"
                     + (f", test accuracy {100 * accuracy:.1f}%" if accuracy is not None else ""),
                     fontsize=10)
        if note:
            self.fig.text(0.09, 0.93, note, fontsize=9, color="dimgray")
        self.fig.legend(handles=legend_handles(self.classes, self.colors), loc="center left",
                        bbox_to_anchor=(0.75, 0.5), frameon=False, fontsize=9)
        self.fig.canvas.draw_idle()
        self.poll()

    def poll(self) -> None:
        self.fig.canvas.flush_events()

    def close(self) -> None:
        self.plt.close(self.fig)
