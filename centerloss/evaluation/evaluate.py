"""A model measured on its data set's test split: after each epoch of training (evaluate_epoch),
and from a saved checkpoint (evaluate_checkpoint, `cl eval`)."""
from __future__ import annotations

import time
from pathlib import Path

import torch
import torch.nn.functional as F

from centerloss.data.registry import dataset_for, normalization_of
from centerloss.data.sample import sample_split
from centerloss.data.types import Dataset
from centerloss.device.runtime import Runtime
from centerloss.errors import CheckpointError
from centerloss.evaluation.inference import infer, load_model
from centerloss.evaluation.metrics import angular_compactness, compactness, nearest_center_accuracy, summarize
from centerloss.evaluation.verification import verify_features
from centerloss.model.center_loss import CenterLoss


def evaluate_checkpoint(path: Path | str, data_dir: str | None = None, device: str = "auto",
                        precision: str = "auto", verify_pairs: int = 0, pair_seed: int = 0,
                        metric: str = "cosine", folds: int = 10, runtime: Runtime | None = None
                        ) -> dict:
    """Every metric of `cl eval` for one checkpoint; architecture and dataset come from its metadata.

    verify_pairs > 0 adds face-style verification on that many pairs drawn with pair_seed from
    the test split, which training never saw (report["verification"]). runtime, when given (the
    CLI resolves one per command), replaces device and precision."""
    runtime = runtime or Runtime.resolve(device, precision)
    dev = runtime.device
    ckpt, model = load_model(path, runtime)
    cfg = ckpt.config
    ds = dataset_for(cfg, dev, data_dir, from_checkpoint=True)
    if list(ds.classes) != list(ckpt.classes):
        raise CheckpointError(f"{path}: its classes do not match the {cfg.dataset} data set")
    if list(ds.test.image_shape) != list(ckpt.input_shape):      # the split eval reads
        raise CheckpointError(f"{path}: it takes {ckpt.input_shape} inputs, the data set's "
                                      f"test split gives {ds.test.image_shape}")
    mean, std = normalization_of(ckpt, ds)     # as trained
    features, logits = infer(model, ds.test, mean, std, runtime)
    report = summarize(features, logits, ds.test.labels, ckpt.centers.to(dev), ckpt.classes)
    report["angular_compactness"] = angular_compactness(features, model.classifier.weight.detach(),
                                                        ds.test.labels)
    report.update({"head": cfg.head, "margin": cfg.margin, "scale": cfg.scale, "checkpoint": str(path), "epoch": ckpt.epoch, "dataset": cfg.dataset,
                   "model": cfg.model, "feature_dim": cfg.feature_dim, "lambda": cfg.lam,
                   "alpha": cfg.alpha})
    if verify_pairs:
        result = verify_features(features, ds.test.labels, verify_pairs, pair_seed, metric, folds)
        report["verification"] = {"metric": metric, "seed": pair_seed, **result.summary}
    return report


def evaluate_epoch(model: torch.nn.Module, center_loss: CenterLoss, ds: Dataset,
                   runtime: Runtime, snapshot_train: int = 0) -> dict:
    """The epoch's test metrics, and the features snapshots keep: of the test split, and of
    `snapshot_train` train images (the same ones every epoch)."""
    start = time.perf_counter()
    features, logits = infer(model, ds.test, ds.mean, ds.std, runtime)
    labels = ds.test.labels
    centers = center_loss.centers
    comp = compactness(features, centers, labels)
    directions = model.classifier.weight.detach()
    record = {
        "test_ce": F.cross_entropy(logits, labels).item(),
        "test_center": 0.5 * (features - centers[labels]).pow(2).sum(1).mean().item(),
        "test_accuracy": (logits.argmax(1) == labels).float().mean().item(),
        "nearest_center_accuracy": nearest_center_accuracy(features, centers, labels),
        "intra_distance": comp["intra"], "inter_distance": comp["inter"], "compactness": comp["ratio"],
        "angular_compactness": angular_compactness(features, directions, labels),
        "_test_snapshot": (features, labels),
    }
    if snapshot_train:   # the same train images every epoch, through the epoch's final model
        sample = sample_split(ds.train, snapshot_train)
        train_features, _ = infer(model, sample, ds.mean, ds.std, runtime)
        record["_train_snapshot"] = (train_features, sample.labels)
    record["eval_seconds"] = time.perf_counter() - start
    return record
