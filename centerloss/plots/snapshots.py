"""A run's feature snapshots read back as 2-D frames: the data behind every feature plot.

Features wider than 2-D go through one PCA fitted once per run (on the last epoch's test
features), so every frame of a run, and its train and test splits, share one view and compare.
Only the 2-D points are kept per epoch, so a long run of wide features stays small in memory."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from centerloss.config.config import Config
from centerloss.config.heads import is_angular
from centerloss.config.options import check
from centerloss.errors import CheckpointError, MissingEpoch, PlotError
from centerloss.plots.projection import Projection
from centerloss.store import checkpoint as ckpt_io
from centerloss.store.checkpoint import check_finite
from centerloss.store.runfolder import FEATURES, available_epochs, snapshot_path

SPLITS = ("test", "train")
CLIP_QUANTILE = 0.001   # axis limits ignore the outermost 0.1% of points on each side
UNIT_LIMITS = ((-1.2, 1.2), (-1.2, 1.2))   # normalised features: the unit circle and a margin


@dataclass
class Snapshot:
    """One epoch's snapshot file, as written by train.save_epoch."""
    epoch: int
    config: Config
    classes: list[str]
    dataset: str
    metrics: dict
    centers: torch.Tensor                   # [C, D]
    features: dict[str, torch.Tensor]       # split -> [N, D]
    labels: dict[str, torch.Tensor]         # split -> [N]
    class_weights: torch.Tensor | None = None   # [C, D] classifier weights; None before cl kept them


def snapshot_epochs(run: Path | str) -> list[int]:
    """The epochs of a run that have a feature snapshot, or a PlotError if it has none."""
    epochs = available_epochs(run, FEATURES)
    if not epochs:
        raise PlotError(f"{run} has no feature snapshots (features/epoch_NNN.safetensors); "
                        f"train one first with: cl train --out {run}")
    return epochs


def check_epoch(run: Path | str, epoch: int) -> None:
    epochs = snapshot_epochs(run)
    if epoch not in epochs:
        raise MissingEpoch(run, epoch, epochs)


def load_snapshot(run: Path | str, epoch: int) -> Snapshot:
    check_epoch(run, epoch)
    path = snapshot_path(run, epoch)
    tensors, meta = ckpt_io.read_tensors(path)
    if meta.get("format") != ckpt_io.FEATURES_FORMAT:
        raise PlotError(f"{path}: not a cl feature snapshot (metadata format {meta.get('format')!r})")
    try:
        config = Config.from_json(meta["config"])
        classes = json.loads(meta["classes"])
        metrics = json.loads(meta.get("metrics", "{}"))
    except (KeyError, ValueError, TypeError) as e:
        raise PlotError(f"{path}: bad metadata ({e})") from e
    if not (isinstance(classes, list) and classes and all(isinstance(c, str) for c in classes)):
        raise PlotError(f"{path}: metadata 'classes' must be a non-empty list of names")
    features, labels = {}, {}
    for split in SPLITS:
        f, y = tensors.get(f"{split}_features"), tensors.get(f"{split}_labels")
        if f is None or y is None:
            continue
        if f.ndim != 2 or y.shape != (f.shape[0],) or f.shape[1] != config.feature_dim:
            raise PlotError(f"{path}: {split}_features {tuple(f.shape)} and {split}_labels "
                            f"{tuple(y.shape)} do not fit {config.feature_dim}-D features")
        if y.numel() and (y.is_floating_point() or int(y.min()) < 0 or int(y.max()) >= len(classes)):
            raise PlotError(f"{path}: {split}_labels lie outside the {len(classes)} classes of the run")
        features[split], labels[split] = f.float(), y.long()
    centers = tensors.get("centers")
    if centers is None or tuple(centers.shape) != (len(classes), config.feature_dim):
        raise PlotError(f"{path}: 'centers' missing or not of shape ({len(classes)}, {config.feature_dim})")
    if "test" not in features:
        raise PlotError(f"{path}: holds no test features")
    weights = tensors.get("class_weights")
    if weights is not None and tuple(weights.shape) != tuple(centers.shape):
        raise PlotError(f"{path}: 'class_weights' not of shape ({len(classes)}, {config.feature_dim})")
    try:
        check_finite(path, {**{f"{k}_features": v for k, v in features.items()}, "centers": centers,
                            **({} if weights is None else {"class_weights": weights})})
    except CheckpointError as e:
        raise PlotError(str(e)) from e
    return Snapshot(epoch, config, classes, meta.get("dataset", config.dataset),
                    metrics if isinstance(metrics, dict) else {}, centers.float(), features, labels,
                    None if weights is None else weights.float())


@dataclass
class Frame:
    epoch: int
    points: np.ndarray          # [N, 2] projected features of the split
    labels: np.ndarray          # [N]
    centers: np.ndarray         # [C, 2] projected centers
    metrics: dict
    kept_variance: float


@dataclass
class RunFrames:
    """The frames of one split of a run, in one projection, with axis limits that fit them all."""
    run: Path
    split: str
    config: Config
    classes: list[str]
    dataset: str
    last_epoch: int
    projection: Projection
    frames: dict[int, Frame]
    limits: tuple[tuple[float, float], tuple[float, float]]
    angular: bool = False       # features normalised, and the frames' centers are class directions

    def frame(self, epoch: int) -> Frame:
        if epoch not in self.frames:
            raise MissingEpoch(self.run, epoch, list(self.frames))
        return self.frames[epoch]


def load_run(run: Path | str, split: str = "test", epochs: list[int] | None = None,
             raw: bool = False) -> RunFrames:
    """Frames of the given epochs (default: all) of a run's split, limits taken over those frames.

    A run of a margin head is drawn as that head sees it, unless raw: every feature normalised
    (on the unit circle when 2-D) and, in place of the centers, the class directions (its
    classifier weights, or the directions of the centers in snapshots that lack the weights)."""
    if split not in ("train", "test"):
        check("--split", split)        # a library caller's own string: the option's message
    run = Path(run)
    present = snapshot_epochs(run)
    for epoch in epochs or []:
        check_epoch(run, epoch)
    last = load_snapshot(run, present[-1])
    angular = is_angular(last.config.head) and not raw
    view = _unit if angular else (lambda x: x)
    projection = Projection.fit(view(last.features["test"]), last.epoch)
    frames = {}
    for epoch in epochs or present:
        snap = last if epoch == last.epoch else load_snapshot(run, epoch)
        if snap.classes != last.classes or snap.config.feature_dim != last.config.feature_dim:
            raise PlotError(f"{snapshot_path(run, epoch)} does not belong to this run: its classes or "
                            f"feature size differ from those of epoch {last.epoch}; remove it or "
                            f"train the run again")
        if split not in snap.features:
            raise PlotError(f"{snapshot_path(run, epoch)} holds no {split} features "
                            f"(the run kept snapshot_train=0); use --split test")
        x = view(snap.features[split])
        marks = snap.centers
        if angular:
            marks = _unit(snap.class_weights if snap.class_weights is not None else snap.centers)
        frames[epoch] = Frame(epoch, projection(x), snap.labels[split].numpy(),
                              projection(marks), snap.metrics, projection.kept_variance(x))
    limits = UNIT_LIMITS if angular else frame_limits(list(frames.values()))
    return RunFrames(run, split, last.config, last.classes, last.dataset, present[-1], projection,
                     frames, limits, angular)


def _unit(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x.float(), dim=1)


def frame_limits(frames: list[Frame]) -> tuple[tuple[float, float], tuple[float, float]]:
    """x and y limits holding every center and all but the outermost points of every frame,
    so that one stray feature does not shrink the picture of all the others."""
    lo = np.full(2, np.inf)
    hi = np.full(2, -np.inf)
    for f in frames:
        q = np.quantile(f.points, [CLIP_QUANTILE, 1 - CLIP_QUANTILE], axis=0, method="nearest")
        lo = np.minimum(lo, np.minimum(q[0], f.centers.min(0)))
        hi = np.maximum(hi, np.maximum(q[1], f.centers.max(0)))
    span = np.maximum(hi - lo, 1e-6)
    lo, hi = lo - 0.05 * span, hi + 0.05 * span
    return (float(lo[0]), float(hi[0])), (float(lo[1]), float(hi[1]))
