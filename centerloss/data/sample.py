"""A data set's fingerprint, which --resume compares, and fixed samples of a split."""
from __future__ import annotations

import dataclasses
import hashlib

import torch

from centerloss.data.folder import StreamedSplit
from centerloss.data.types import Dataset, Split

FINGERPRINT_SAMPLE = 4096   # images hashed per split: bounded time however large the set is


def fingerprint(ds: Dataset) -> str:
    """A short hash of the data set's classes, sizes, labels and a fixed sample of its images:
    equal for the same data, different (in practice) for other data of the same name."""
    h = hashlib.sha256(repr((ds.name, list(ds.classes))).encode())
    for split in (ds.train, ds.test):
        n = len(split)
        h.update(repr((n, list(split.image_shape))).encode())
        h.update(split.labels.cpu().numpy().tobytes())
        pick = torch.linspace(0, n - 1, min(n, FINGERPRINT_SAMPLE)).long()
        images = getattr(split, "images", None)
        if images is not None:
            h.update(images.index_select(0, pick.to(images.device)).cpu().numpy().tobytes())
        else:   # a streamed folder: its files' names stand for its images
            h.update("\n".join(split.paths[i] for i in pick.tolist()).encode("utf-8", "replace"))
    return h.hexdigest()[:16]


def sample_split(split: Split | StreamedSplit, k: int) -> Split | StreamedSplit:
    """k images spread evenly over the split (all of it when it has no more), the same ones
    every epoch: what the train-feature snapshot shows."""
    n = len(split)
    if k >= n:
        return split
    pick = torch.linspace(0, n - 1, k).long()
    if getattr(split, "images", None) is not None:
        idx = pick.to(split.images.device)
        return Split(split.images.index_select(0, idx),
                              split.labels.index_select(0, idx.to(split.labels.device)))
    return dataclasses.replace(split, paths=[split.paths[i] for i in pick.tolist()],
                               labels=split.labels.index_select(0, pick.to(split.labels.device)))
