"""The curves of a run: losses, accuracies and compactness per epoch, from its history."""
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
)


def curves_figure(run: Path | str) -> Figure:
    """Losses, accuracies and compactness per epoch, from the run's history.jsonl."""
    history = read_history(run)
    if not history:
        raise PlotError(f"{run} has no history.jsonl with epochs in it; train first with: "
                        f"cl train --out {run}")
    cfg, dataset = run_config_of(run)
    epochs = [r["epoch"] for r in history]
    fig = Figure(figsize=(10.0, 7.0), dpi=DPI)
    fig.text(0.07, 0.96, f"{dataset_title(dataset, cfg.data_dir)}  ·  {MODEL_TITLES.get(cfg.model, cfg.model)}  ·  "
             f"{head_title(cfg)}  ·  "
             f"λ = {cfg.lam:g}, α = {cfg.alpha:g}  ·  {cfg.feature_dim}-D features  ·  "
             f"{len(history)} epoch{'' if len(history) == 1 else 's'}", fontsize=13, weight="bold",
             va="center")
    for i, (title, series, log_y, as_percent) in enumerate(CURVES):
        ax = fig.add_axes((0.07 + 0.5 * (i % 2), 0.53 - 0.45 * (i // 2), 0.4, 0.34))
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
