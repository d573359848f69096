"""Figures of a run: the features of an epoch, a GIF of all epochs, the curves, runs side by
side, and the verification ROC; each written by save.save_figure, in the format of its name."""
from centerloss.plots.curves import curves_figure
from centerloss.plots.features import (
                                       DPI,
                                       EPOCH_SIZE,
                                       compare_figure,
                                       draw_features,
                                       epoch_figure,
                                       legend_handles,
                                       view_note,
                                       write_gif,
)
from centerloss.plots.palette import class_colors
from centerloss.plots.roc import PAIRS as ROC_PAIRS, roc_figure, save_roc, snapshot_curves
from centerloss.plots.save import check_format, figure_formats, save_figure

__all__ = ["DPI", "EPOCH_SIZE", "check_format", "class_colors", "compare_figure", "curves_figure",
           "draw_features", "epoch_figure", "figure_formats", "legend_handles", "ROC_PAIRS", "roc_figure",
           "save_figure", "save_roc", "snapshot_curves", "view_note", "write_gif"]
