"""Figures of a run: the features of an epoch, a GIF of all epochs, the curves, runs side by
side, and the verification ROC; each written by save.save_figure, in the format of its name.

The names below load on first use (PEP 562): importing the package for its palette, as the
terminal's live view does on every `cl train`, does not import matplotlib's figure machinery
(about a third of a second)."""
from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "curves_figure": "curves",
    **dict.fromkeys(("DPI", "EPOCH_SIZE", "compare_figure", "draw_features", "epoch_figure",
                     "legend_handles", "view_note", "write_gif"), "features"),
    "class_colors": "palette",
    "ROC_PAIRS": "roc", "roc_figure": "roc", "save_roc": "roc", "snapshot_curves": "roc",
    "check_format": "save", "figure_formats": "save", "save_figure": "save",
}
_RENAMED = {"ROC_PAIRS": "PAIRS"}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module = importlib.import_module(f"{__name__}.{_LAZY[name]}")
        return getattr(module, _RENAMED.get(name, name))
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
