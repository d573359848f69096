"""The ROC figure of verification: true accept rate against false accept rate on a log axis,
where face verification is judged (FAR 1e-3 and 1e-2 are marked). Agg only, no pyplot state."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Mapping

import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from centerloss.config.options import OPTIONS
from centerloss.evaluation.verification import FARS, FEW_IMPOSTORS, auc, verify_features
from centerloss.plots.save import save_figure
from centerloss.plots.snapshots import PlotError, check_epoch, snapshot_epochs
from centerloss.store.checkpoint import read_tensors
from centerloss.store.runfolder import snapshot_path

PAIRS = OPTIONS["--num-pairs"].default    # pairs drawn per run: as many as cl eval --verify draws
# (false accept rates, true accept rates), and where known the number of impostor (non-matching)
# pairs they were counted on
Curve = tuple[torch.Tensor, torch.Tensor] | tuple[torch.Tensor, torch.Tensor, int]


def impostors_at_far(fpr: torch.Tensor, tpr: torch.Tensor, far: float, impostors: int) -> int:
    """How many impostor pairs score above the threshold that gives the TAR at `far`
    (verification.tar_at_far's point): what that TAR rests on."""
    allowed = fpr <= far + 1e-12
    best = int(torch.nonzero(allowed & (tpr == tpr[allowed].max()))[0])
    return round(float(fpr[best]) * impostors)


def few_impostor_notes(curves: Mapping[str, Curve], smallest: float) -> list[str]:
    """One line for each marked FAR whose TAR rests on fewer than FEW_IMPOSTORS impostor pairs in
    some curve: that figure moves by a step with each pair."""
    notes = []
    for far in FARS:
        if far < smallest:
            continue
        counts = [(impostors_at_far(c[0].double().cpu(), c[1].double().cpu(), far, c[2]), c[2])
                  for c in curves.values() if len(c) > 2]
        if counts and min(n for n, _ in counts) < FEW_IMPOSTORS:
            said = " / ".join(f"{n}" for n, _ in counts)
            total = " / ".join(sorted({f"{t:,}" for _, t in counts}))
            notes.append(f"TAR at FAR {far:g} rests on few pairs: {said} of {total} impostors "
                         f"above the threshold{' (legend order)' if len(counts) > 1 else ''}")
    return notes


def roc_figure(curves: Mapping[str, Curve], title: str = "") -> Figure:
    """One line per labelled curve, its AUC in the legend. The log axis starts at the smallest
    non-zero false accept rate among the curves: below it the data say nothing. The legend sits
    under the axes: inside, wherever it went, it would hide some curve at some FAR."""
    smallest = 1.0
    for fpr, *_ in curves.values():
        if (fpr > 0).any():
            smallest = min(smallest, float(fpr[fpr > 0].min()))
    notes = few_impostor_notes(curves, smallest)
    below = 0.3 + 0.22 * len(curves) + 0.2 * len(notes)   # inches for the legend and the notes
    height = 5.2 + below
    fig = Figure(figsize=(6.0, height), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_axes((0.12, (0.55 + below) / height, 0.83, 4.0 / height))
    lowest = 1.0      # the smallest TAR on the axis: at its left edge, as TAR only rises with FAR
    for label, (fpr, tpr, *_) in curves.items():
        fpr, tpr = fpr.double().cpu(), tpr.double().cpu()
        lowest = min(lowest, float(tpr[fpr <= smallest + 1e-12].max()))
        ax.step(fpr.numpy(), tpr.numpy(), where="post", label=f"{label} (AUC {auc(fpr, tpr):.4f})")
    ax.set_xscale("log")
    ax.set_xlim(smallest, 1.0)
    # good models keep TAR near 1 over the whole axis: start the y axis at the tenth below the
    # lowest TAR drawn, so that their curves part instead of lying together on the top edge
    ax.set_ylim(math.floor(10 * lowest) / 10, 1.005)
    for far in FARS:
        if far >= smallest:
            ax.axvline(far, color="grey", linestyle=":", linewidth=1)
            ax.text(far, 1.01, f"FAR {far:g}", color="dimgray", fontsize=8, ha="center",
                    va="bottom", transform=ax.get_xaxis_transform(), clip_on=False)
    ax.set_xlabel("false accept rate")
    ax.set_ylabel("true accept rate")
    ax.grid(True, which="major", alpha=0.3)
    fig.legend(loc="lower center", bbox_to_anchor=(0.5, (0.1 + 0.2 * len(notes)) / height),
               frameon=False, fontsize=9)
    for i, note in enumerate(notes):
        fig.text(0.5, (0.1 + 0.2 * (len(notes) - 1 - i)) / height, note, ha="center", va="bottom",
                 fontsize=8, color="dimgray")
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
        impostors = ver.summary["non_matching"]
        # λ as every other cl figure writes it (cl plot --compare, the feature plots)
        label = f"{Path(run).name or run}: λ = {lam:g}, epoch {chosen}" if lam is not None else str(run)
        curves[label] = (ver.fpr, ver.tpr, impostors)
    return curves
