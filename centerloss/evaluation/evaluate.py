"""A model measured on its data set's test split: after each epoch of training (evaluate_epoch),
and from a saved checkpoint (evaluate_checkpoint, `cl eval`)."""
from __future__ import annotations

import time
from pathlib import Path

import torch

from centerloss.config.heads import is_angular
from centerloss.data.registry import dataset_for, normalization_of
from centerloss.data.sample import sample_split
from centerloss.data.types import Dataset
from centerloss.device.runtime import Runtime
from centerloss.errors import CheckpointError, OptionError, VerificationError
from centerloss.evaluation.inference import infer_outcomes, load_model
from centerloss.evaluation.metrics import angular_compactness, compactness, nearest_center_accuracy, summarize
from centerloss.evaluation.retrieval import distance_for, retrieval_figures
from centerloss.evaluation.verification import verify_features
from centerloss.model.center_loss import CenterLoss

REFERENCES = ("test", "train")      # what the test images are ranked against
# the retrieval figures a training record keeps (history.jsonl, the end-of-training summary)
RECORD_KEYS = ("precision_at_1", "r_precision", "mean_average_precision_at_r", "nmi", "ami")

# Test splits up to this size get the retrieval figures after every epoch; larger ones after
# the last epoch only. On MNIST (10,000 test images) they cost about 1% of an epoch of LeNets++
# (docs/performance.md); their cost grows with the square of the test split, an epoch linearly.
RETRIEVAL_EVERY_EPOCH = 10_000


def retrieval_due(epoch: int, epochs: int, test_images: int) -> bool:
    """Whether the epoch's record gets the retrieval figures: the last always, the others when
    the test split is small enough for them to cost little."""
    return epoch == epochs or test_images <= RETRIEVAL_EVERY_EPOCH


def evaluate_checkpoint(path: Path | str, data_dir: str | None = None, device: str = "auto",
                        precision: str = "auto", verify_pairs: int = 0, pair_seed: int = 0,
                        metric: str = "cosine", folds: int = 10, runtime: Runtime | None = None,
                        reference: str = "test") -> dict:
    """Every metric of `cl eval` for one checkpoint; architecture and dataset come from its metadata.

    verify_pairs > 0 adds face-style verification on that many pairs drawn with pair_seed from
    the test split, which training never saw (report["verification"]). runtime, when given (the
    CLI resolves one per command), replaces device and precision. report["retrieval"] ranks each
    test image against the other test images (reference "test"), or against the training
    features (reference "train": the test images as queries to a gallery of the train split)."""
    if reference not in REFERENCES:
        raise OptionError(f"--reference must be one of: {', '.join(REFERENCES)}; got {reference!r}")
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
    test = infer_outcomes(model, ds.test, mean, std, runtime)
    features = test.features
    report = summarize(features, test.predictions, ds.test.labels, ckpt.centers.to(dev), ckpt.classes)
    report["angular_compactness"] = angular_compactness(features, model.classifier.weight.detach(),
                                                        ds.test.labels)
    report.update({"head": cfg.head, "margin": cfg.margin, "scale": cfg.scale, "checkpoint": str(path), "epoch": ckpt.epoch, "dataset": cfg.dataset,
                   "model": cfg.model, "feature_dim": cfg.feature_dim, "lambda": cfg.lam,
                   "alpha": cfg.alpha})
    gallery, gallery_labels = None, None
    if reference == "train":
        gallery, gallery_labels = infer_outcomes(model, ds.train, mean, std, runtime).features, ds.train.labels
    report["retrieval"] = retrieval_report(features, ds.test.labels, cfg.head, reference,
                                           gallery, gallery_labels)
    if verify_pairs:
        report["verification"] = verification_report(features, ds.test.labels, gallery, gallery_labels,
                                                      verify_pairs, pair_seed, metric, folds)
    return report


def verification_report(features: torch.Tensor, labels: torch.Tensor, gallery: torch.Tensor | None,
                        gallery_labels: torch.Tensor | None, pairs: int, seed: int, metric: str,
                        folds: int) -> dict:
    """Verification on pairs drawn from the test split, or with a gallery (--reference train),
    on pairs of a test image and a test or training image: the only matching pairs a split of one
    test image per identity (a face folder of few images each) has."""
    if gallery is None:
        if int(torch.bincount(labels.long().cpu()).max()) < 2:
            raise VerificationError("no class has two test images to make a matching pair; add "
                                    "--reference train to pair test images with training images")
        result = verify_features(features, labels, pairs, seed, metric, folds)
        return {"metric": metric, "seed": seed, "pairs_from": "test", **result.summary}
    pool = torch.cat([features, gallery.to(features.device)])
    pool_labels = torch.cat([labels, gallery_labels.to(labels.device)])
    result = verify_features(pool, pool_labels, pairs, seed, metric, folds, queries=labels.shape[0])
    return {"metric": metric, "seed": seed, "pairs_from": "test with test or train", **result.summary}


def retrieval_report(features: torch.Tensor, labels: torch.Tensor, head: str, reference: str = "test",
                     gallery: torch.Tensor | None = None, gallery_labels: torch.Tensor | None = None
                     ) -> dict:
    """The retrieval and clustering figures of test features as `cl eval` reports them: Euclidean
    for softmax and center loss, cosine for a margin head; leave-one-out in the test split, or
    against the gallery (the train split's features) for reference "train"."""
    out = retrieval_figures(features, labels, distance_for(is_angular(head)), gallery, gallery_labels)
    out["reference"] = "test, leave-one-out" if reference == "test" else "train"
    return out


def evaluate_epoch(model: torch.nn.Module, center_loss: CenterLoss, ds: Dataset,
                   runtime: Runtime, snapshot_train: int = 0, retrieval: str | None = None) -> dict:
    """The epoch's test metrics, and the features snapshots keep: of the test split, and of
    `snapshot_train` train images (the same ones every epoch). With retrieval (the head's name),
    the retrieval and clustering figures too, leave-one-out in the test split."""
    start = time.perf_counter()
    test = infer_outcomes(model, ds.test, ds.mean, ds.std, runtime)
    features, labels = test.features, ds.test.labels
    centers = center_loss.centers
    comp = compactness(features, centers, labels)
    directions = model.classifier.weight.detach()
    record = {
        "test_ce": test.cross_entropy.mean().item(),
        "test_center": 0.5 * (features - centers[labels]).pow(2).sum(1).mean().item(),
        "test_accuracy": (test.predictions == labels).float().mean().item(),
        "nearest_center_accuracy": nearest_center_accuracy(features, centers, labels),
        "intra_distance": comp["intra"], "inter_distance": comp["inter"], "compactness": comp["ratio"],
        "angular_compactness": angular_compactness(features, directions, labels),
        "_test_snapshot": (features, labels),
    }
    if retrieval is not None:     # its time is part of eval_seconds
        figures = retrieval_report(features, labels, retrieval)
        record.update({key: figures[key] for key in RECORD_KEYS})
        record["retrieval_distance"] = figures["distance"]
    if snapshot_train:   # the same train images every epoch, through the epoch's final model
        sample = sample_split(ds.train, snapshot_train)
        train_features = infer_outcomes(model, sample, ds.mean, ds.std, runtime).features   # no logits
        record["_train_snapshot"] = (train_features, sample.labels)
    record["eval_seconds"] = time.perf_counter() - start
    return record
