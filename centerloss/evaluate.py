"""Evaluate a saved checkpoint on its dataset's test split."""
from __future__ import annotations

from pathlib import Path

from . import checkpoint as ckpt_io
from . import data as data_mod
from .metrics import summarize
from .train import infer, resolve_device, resolve_precision


def evaluate_checkpoint(path: Path | str, data_dir: str | None = None, device: str = "auto",
                        precision: str = "auto") -> dict:
    """Every metric of `cl eval` for one checkpoint; architecture and dataset come from its metadata."""
    ckpt = ckpt_io.load_checkpoint(Path(path))
    dev = resolve_device(device)
    prec = resolve_precision(precision, dev)
    model = ckpt_io.build_from_checkpoint(ckpt, path).to(dev)
    cfg = ckpt.config
    ds = data_mod.load(cfg.dataset, data_dir or cfg.data_dir or None, dev)
    if list(ds.classes) != list(ckpt.classes):
        raise ckpt_io.CheckpointError(f"{path}: its classes do not match the {cfg.dataset} data set")
    features, logits = infer(model, ds.test, ds.mean, ds.std, dev, prec)
    report = summarize(features, logits, ds.test.labels, ckpt.centers.to(dev), ckpt.classes)
    report.update({"checkpoint": str(path), "epoch": ckpt.epoch, "dataset": cfg.dataset,
                   "model": cfg.model, "feature_dim": cfg.feature_dim, "lambda": cfg.lam,
                   "alpha": cfg.alpha})
    return report
