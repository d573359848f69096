"""The curves of a run: losses, accuracies, compactness and the learning rate per epoch, from its
history."""
from __future__ import annotations

import math
from pathlib import Path

from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, NullFormatter

from centerloss.plots.features import MODEL_TITLES, dataset_title, head_title
from centerloss.plots.save import DPI
from centerloss.plots.snapshots import PlotError, load_snapshot, snapshot_epochs
from centerloss.store.checkpoint import read_history


def run_config_of(run: Path | str):
    """The config and data set name of a run, from its latest snapshot."""
    snap = load_snapshot(run, snapshot_epochs(run)[-1])
    return snap.config, snap.dataset


CURVES = (
    ("cross-entropy", (("train_ce", "train"), ("test_ce", "test")), False, False),
    ("center loss (½‖x − c‖², batch mean)", (("train_center", "train"), ("test_center", "test")),
     True, False),
    ("accuracy on the test split", (("test_accuracy", "softmax"),
                                    ("nearest_center_accuracy", "nearest center")), False, True),
    ("compactness: intra / inter distance", (("compactness", "test"),), False, False),
    ("learning rate at each epoch's end", (("lr", "learning rate"),), False, False),
)
CURVES_SIZE = (10.0, 9.6)     # inches: two rows of two panels, then the learning rate across
PANEL_HEIGHT, RATE_HEIGHT = 2.35, 1.75     # inches


def panel_box(i: int) -> tuple[float, float, float, float]:
    """Where panel i sits, in figure fractions: the first four in a 2 x 2 grid, the learning rate
    under them at full width."""
    w, h = CURVES_SIZE
    if i < 4:
        bottom = 0.55 + RATE_HEIGHT + 0.85 + (1 - i // 2) * (PANEL_HEIGHT + 0.8)
        return 0.07 + 0.5 * (i % 2), bottom / h, 0.4, PANEL_HEIGHT / h
    return 0.07, 0.55 / h, 0.9, RATE_HEIGHT / h


def curves_figure(run: Path | str) -> Figure:
    """Losses, accuracies, compactness and the learning rate per epoch, from the run's
    history.jsonl (its "lr": the rate of each epoch's last step, after any guard's cut)."""
    history = read_history(run)
    if not history:
        raise PlotError(f"{run} has no history.jsonl with epochs in it; train first with: "
                        f"cl train --out {run}")
    cfg, dataset = run_config_of(run)
    epochs = [r["epoch"] for r in history]
    fig = Figure(figsize=CURVES_SIZE, dpi=DPI)
    title = (f"{dataset_title(dataset, cfg.data_dir)}  ·  {MODEL_TITLES.get(cfg.model, cfg.model)}  ·  "
             f"{head_title(cfg)}  ·  λ = {cfg.lam:g}, α = {cfg.alpha:g}  ·  "
             f"{cfg.feature_dim}-D features  ·  {len(history)} epoch{'' if len(history) == 1 else 's'}")
    # 13 points while it fits the figure's width (about 90 characters), smaller beyond
    fig.text(0.07, 1 - 0.3 / CURVES_SIZE[1], title, fontsize=min(13.0, 13.0 * 88 / len(title)),
             weight="bold", va="center")
    for i, (title, series, log_y, as_percent) in enumerate(CURVES):
        ax = fig.add_axes(panel_box(i))
        for key, label in series:
            ys = [r.get(key, math.nan) for r in history]
            if as_percent:
                ys = [100 * y for y in ys]
            ax.plot(epochs, ys, marker="o", markersize=3.5, label=label)
        # one point has no range for a log axis to label: linear until there are two
        if log_y and len(history) > 1 and all(r.get(k, 0) > 0 for r in history for k, _ in series):
            log_axis(ax, [r[k] for r in history for k, _ in series])
        ax.set_title(title, fontsize=11)
        ax.set_xlabel("epoch")
        if as_percent:
            ax.set_ylabel("%")
        ax.xaxis.get_major_locator().set_params(integer=True)
        if len(epochs) == 1:      # else matplotlib spreads ticks 0.96 .. 1.04 around the one epoch
            ax.set_xlim(epochs[0] - 1, epochs[0] + 1)
            ax.set_xticks(epochs)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=9, frameon=False)
    return fig


def log_axis(ax, values: list[float]) -> None:
    """A log y axis labelled with plain numbers (0.5, 2, 40, not 5x10^-1); while the values span
    less than two decades, the minor ticks at 2, 3 and 5 are labelled too so a short range still
    has labels, and the others stay bare so that labels never crowd."""
    ax.set_yscale("log")
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    if max(values) / min(values) < 100:
        def minor(v: float, _) -> str:
            mantissa = round(v / 10 ** math.floor(math.log10(v) + 1e-9), 6)
            return f"{v:g}" if mantissa in (2, 3, 5) else ""
        ax.yaxis.set_minor_formatter(FuncFormatter(minor))
    else:
        ax.yaxis.set_minor_formatter(NullFormatter())
