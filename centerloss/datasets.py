"""The data sets cl trains on, as uint8 tensors on the training device, and every --dataset by
name: the idx family (idx.py), CIFAR-10 (cifar.py) and image folders (folder.py). Batches of them
are batches.py's.

Images are uint8 [N, H, W] when they have one channel (no channel axis, so the MNIST path makes
no extra copy) and [N, H, W, C] when they have more: channels last, as the files store them, and
a permute of such a batch is already the channels_last layout the models run in."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import torch

from .config import Config
from .errors import DataError
from .options import check


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
        check("--split", name)
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



def open_dataset(name: str, data_dir: str | os.PathLike | None = None,
                 device: torch.device | str = "cpu", download: bool = True, image_size: int = 0,
                 channels: int = 0, memory_mb: int = 0, workers: int = -1) -> Dataset:
    """Any --dataset by name. image_size, channels, memory_mb and workers shape an image folder;
    the built-in sets come at their own size and channels, and asking otherwise is an error."""
    check("--dataset", name)       # the one check of a data set's name, as Config.validate makes it
    from .cifar import load_cifar10     # here: each loader imports this module's types
    from .folder import load_folder
    from .idx import load
    if name == "folder":
        if not data_dir:
            raise DataError("--dataset folder needs --data-dir: a folder with one subfolder of "
                            "images per class")
        return load_folder(data_dir, device, image_size, channels, memory_mb, workers)
    if name == "cifar10":
        ds = load_cifar10(data_dir, device, download)
    else:
        ds = load(name, data_dir, device, download)
    c, h, w = ds.input_shape
    if image_size and (h, w) != (image_size, image_size):
        raise DataError(f"--image-size {image_size}: {name} images are {h}x{w}, and "
                        f"--image-size resizes only --dataset folder")
    if channels and channels != c:
        raise DataError(f"--channels {channels}: {name} images have {c}, and "
                        f"--channels applies only to --dataset folder")
    return ds


def dataset_for(cfg: Config, device: torch.device | str = "cpu", data_dir: str | None = None,
                from_checkpoint: bool = False) -> Dataset:
    """The data set a run's config names; data_dir overrides the config's folder.

    from_checkpoint: cfg came from a checkpoint, maybe a stranger's, so its data_dir is a path
    someone else chose. It is only read, and only if it exists: nothing is downloaded into it or
    created there, and a missing one asks for --data-dir."""
    download = True
    if from_checkpoint and not data_dir and cfg.data_dir:
        saved = Path(cfg.data_dir)
        from .cifar import FOLDER as CIFAR_FOLDER, is_unpacked as cifar_unpacked
        # CIFAR-10 would be unpacked from its archive into that folder: only batches already
        # unpacked there are read
        if not saved.is_dir() or (cfg.dataset == "cifar10" and not any(
                cifar_unpacked(folder) for folder in (saved / CIFAR_FOLDER, saved))):
            raise DataError(f"{cfg.dataset}: the model was trained on data in {cfg.data_dir}, "
                            f"which is not here; pass --data-dir with a folder holding the "
                            f"{cfg.dataset} data")
        download = False
    return open_dataset(cfg.dataset, data_dir or cfg.data_dir or None, device, download,
                        image_size=cfg.image_size, channels=cfg.channels,
                        memory_mb=cfg.memory_mb, workers=cfg.workers)
