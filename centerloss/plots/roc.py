"""The ROC figure of verification: true accept rate against false accept rate on a log axis,
where face verification is judged (FAR 1e-3 and 1e-2 are marked). Agg only, no pyplot state."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping

import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from centerloss.config.options import OPTIONS
from centerloss.evaluation.verification import FARS, auc, verify_features
from centerloss.plots.save import save_figure
from centerloss.plots.snapshots import PlotError, check_epoch, snapshot_epochs
from centerloss.store.checkpoint import read_tensors
from centerloss.store.runfolder import snapshot_path

PAIRS = OPTIONS["--num-pairs"].default    # pairs drawn per run: as many as cl eval --verify draws
Curve = tuple[torch.Tensor, torch.Tensor]     # (false accept rates, true accept rates)


def roc_figure(curves: Mapping[str, Curve], title: str = "") -> Figure:
    """One line per labelled curve, its AUC in the legend. The log axis starts at the smallest
    non-zero false accept rate among the curves: below it the data say nothing. The legend sits
    under the axes: inside, wherever it went, it would hide some curve at some FAR."""
    below = 0.3 + 0.22 * len(curves)           # inches for the legend under the x label
    height = 5.2 + below
    fig = Figure(figsize=(6.0, height), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.12, (0.55 + below) / height, 0.83, 4.0 / height))
    smallest = 1.0
    for label, (fpr, tpr) in curves.items():
        fpr, tpr = fpr.double().cpu(), tpr.double().cpu()
        if (fpr > 0).any():
            smallest = min(smallest, float(fpr[fpr > 0].min()))
        ax.step(fpr.numpy(), tpr.numpy(), where="post", label=f"{label} (AUC {auc(fpr, tpr):.4f})")
    ax.set_xscale("log")
    ax.set_xlim(smallest, 1.0)
    ax.set_ylim(0.0, 1.01)
    for far in FARS:
        if far >= smallest:
            ax.axvline(far, color="grey", linestyle=":", linewidth=1)
            ax.text(far, 1.01, f"FAR {far:g}", color="dimgray", fontsize=8, ha="center",
                    va="bottom", transform=ax.get_xaxis_transform(), clip_on=False)
    ax.set_xlabel("false accept rate")
    ax.set_ylabel("true accept rate")
    ax.grid(True, which="major", alpha=0.3)
    fig.legend(loc="lower center", bbox_to_anchor=(0.5, 0.1 / height), frameon=False, fontsize=9)
    ax.set_title(title or "verification ROC", pad=16)
    return fig


def save_roc(path: Path | str, curves: Mapping[str, Curve], title: str = "") -> Path:
    """Write the ROC figure of one or more curves (say, one run per lambda) to path; the format
    follows the extension (png, pdf, svg, ...), and the write is atomic."""
    return save_figure(roc_figure(curves, title), path)


def snapshot_curves(runs: list[Path], epoch: int | None = None, metric: str = "cosine",
                    pairs: int = PAIRS, seed: int = 0) -> dict[str, Curve]:
    """One ROC curve per run, from pairs drawn (with the seed) from the test features of its
    stored snapshot at `epoch` (default: the run's last): no data set and no forward pass."""
    curves = {}
    for run in runs:
        present = snapshot_epochs(run)
        chosen = present[-1] if epoch is None else epoch
        check_epoch(run, chosen)
        tensors, meta = read_tensors(snapshot_path(run, chosen))
        if "test_features" not in tensors or "test_labels" not in tensors:
            raise PlotError(f"{snapshot_path(run, chosen)}: no test_features/test_labels in this snapshot")
        lam = json.loads(meta.get("config", "{}")).get("lam")
        ver = verify_features(tensors["test_features"], tensors["test_labels"], pairs, seed, metric)
        # λ as every other cl figure writes it (cl plot --compare, the feature plots)
        label = f"{Path(run).name or run}: λ = {lam:g}, epoch {chosen}" if lam is not None else str(run)
        curves[label] = (ver.fpr, ver.tpr)
    return curves
