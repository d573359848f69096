"""Evaluate a saved checkpoint on its dataset's test split."""
from __future__ import annotations

from pathlib import Path

from . import checkpoint as ckpt_io
from .datasets import dataset_for
from .metrics import angular_compactness, summarize
from .runtime import Runtime, infer, load_model
from .verification import verify_features


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
        raise ckpt_io.CheckpointError(f"{path}: its classes do not match the {cfg.dataset} data set")
    if list(ds.test.image_shape) != list(ckpt.input_shape):      # the split eval reads
        raise ckpt_io.CheckpointError(f"{path}: it takes {ckpt.input_shape} inputs, the data set's "
                                      f"test split gives {ds.test.image_shape}")
    mean, std = ckpt_io.normalization_of(ckpt, ds)     # as trained
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
