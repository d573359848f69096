"""The in-memory data set types every loader returns: a Split (uint8 images and labels on the
training device) and a Dataset (its classes, normalisation and splits).

Images are uint8 [N, H, W] when they have one channel (no channel axis, so the MNIST path makes
no extra copy) and [N, H, W, C] when they have more: channels last, as the files store them, and
a permute of such a batch is already the channels_last layout the models run in."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import torch

from centerloss.config import check
from centerloss.config.options import SPLITS


def default_data_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "cl" / "data"


# Per-channel statistics: a float for one channel (the MNIST family), a tuple for several.
Stats = float | Sequence[float]


@dataclass
class Split:
    """A split held whole in memory, on the device."""
    images: torch.Tensor        # uint8 [N, H, W] (one channel) or [N, H, W, C], on the device
    labels: torch.Tensor        # int64 [N] on the device

    def __len__(self) -> int:
        return self.labels.shape[0]

    @property
    def image_shape(self) -> list[int]:
        """[C, H, W] of one image as the model sees it."""
        if self.images.ndim == 3:
            return [1, *self.images.shape[1:]]
        _, h, w, c = self.images.shape
        return [c, h, w]

    def gather_batches(self, order: torch.Tensor, slices: list[slice]
                       ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(uint8 images, indices on the device) of order[s] for each slice s; the order crosses
        to the device once, and each batch is one gather there."""
        order = order.to(self.labels.device, non_blocking=True)
        for s in slices:
            idx = order[s]
            yield self.images.index_select(0, idx), idx

    def ordered_batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(uint8 images, labels) in order: views, no copy."""
        for lo in range(0, len(self), batch_size):
            yield self.images[lo:lo + batch_size], self.labels[lo:lo + batch_size]


@dataclass
class Dataset:
    name: str
    classes: tuple[str, ...]
    mean: Stats
    std: Stats
    train: Split                # or folder.StreamedSplit, which has the same methods
    test: Split

    def split(self, name: str) -> Split:
        if name not in SPLITS:
            check("--split", name)     # a library caller's own string: the option's message
        return self.train if name == "train" else self.test

    @property
    def input_shape(self) -> list[int]:
        return self.train.image_shape

    def normalization(self) -> dict[str, list[float]]:
        """Per-channel mean and std, as a checkpoint stores them for images from elsewhere."""
        c = self.input_shape[0]
        def per_channel(v: Stats) -> list[float]:
            return [float(v)] * c if isinstance(v, (int, float)) else [float(x) for x in v]
        return {"mean": per_channel(self.mean), "std": per_channel(self.std)}
