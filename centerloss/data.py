"""Datasets as uint8 tensors on the training device; batching, normalisation and augmentation
done on whole batches on that device, so no per-sample Python or PIL work sits in the loop.

Images are uint8 [N, H, W] when they have one channel (no channel axis, so the MNIST path makes
no extra copy) and [N, H, W, C] when they have more: channels last, as the files store them, and
a permute of such a batch is already the channels_last layout the models run in."""
from __future__ import annotations

import functools
import gzip
import math
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import torch

from .errors import DataError
from .options import check


@dataclass(frozen=True)
class DatasetSpec:
    tv_class: str               # torchvision.datasets class name; also its folder under the root
    classes: tuple[str, ...]
    mean: float
    std: float
    url: str                    # where a person can fetch the files by hand


IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

DATASETS: dict[str, DatasetSpec] = {
    "mnist": DatasetSpec("MNIST", tuple(str(i) for i in range(10)), 0.1307, 0.3081,
                         "https://ossci-datasets.s3.amazonaws.com/mnist/"),
    "fashion-mnist": DatasetSpec(
        "FashionMNIST",
        ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
         "Ankle boot"),
        0.2860, 0.3530, "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"),
    "kmnist": DatasetSpec("KMNIST", ("o", "ki", "su", "tsu", "na", "ha", "ma", "ya", "re", "wo"),
                          0.1918, 0.3483, "http://codh.rois.ac.jp/kmnist/dataset/kmnist/"),
}

# Debian's dataset packages install the raw .gz files here (apt-get install dataset-fashion-mnist).
SYSTEM_DIRS = {"fashion-mnist": Path("/usr/share/datasets/fashion-mnist")}


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


def _find_raw(folder: Path) -> dict[str, Path] | None:
    """The four idx files in folder, plain or gzipped, or None when any is missing."""
    found = {}
    for names in IDX_FILES.values():
        for name in names:
            for candidate in (folder / name, folder / (name + ".gz")):
                if candidate.is_file():
                    found[name] = candidate
                    break
            else:
                return None
    return found


MAX_IDX_BYTES = 16 << 30      # what one idx file may declare: far above any real set


def read_idx(path: Path, ndim: int) -> torch.Tensor:
    """The uint8 tensor of an idx file (plain or .gz), read where it lies: a read-only folder
    or a stranger's is never written to. DataError naming the file for anything malformed."""
    opener = gzip.open if path.suffix == ".gz" else open
    kind = "images" if ndim == 3 else "labels"
    try:
        with opener(path, "rb") as f:
            head = f.read(4 + 4 * ndim)
            if len(head) < 4 + 4 * ndim or head[:3] != b"\0\0\x08" or head[3] != ndim:
                raise DataError(f"{path}: not an idx file of uint8 {kind} (its first bytes are "
                                f"{head[:4].hex() or 'missing'}, expected 0000080{ndim}); "
                                f"fetch the file again")
            shape = struct.unpack(f">{ndim}I", head[4:])
            size = math.prod(shape)
            if size > MAX_IDX_BYTES or (ndim == 3 and min(shape[1:]) == 0):
                raise DataError(f"{path}: declares {kind} of shape {shape}, which cl does not "
                                f"read; fetch the file again")
            body = f.read(size)
            extra = f.read(1)
    except (OSError, EOFError, zlib.error) as e:     # EOFError: a truncated .gz
        raise DataError(f"{path}: cannot be read ({getattr(e, 'strerror', None) or e}); "
                        f"fetch the file again") from e
    if len(body) != size or extra:
        raise DataError(f"{path}: holds {len(body)}{'+' if extra else ''} bytes of {kind} where "
                        f"its header declares {size} {shape}; the file is truncated or "
                        f"damaged: fetch it again")
    return torch.frombuffer(bytearray(body), dtype=torch.uint8).reshape(shape) if size else \
        torch.empty(shape, dtype=torch.uint8)


def _missing_message(name: str, spec: DatasetSpec, looked: list[Path], why: str) -> str:
    where = ", ".join(str(p) for p in looked)
    files = " ".join(spec.url + f + ".gz" for pair in IDX_FILES.values() for f in pair)
    if name in SYSTEM_DIRS:
        offline = f"; or install Debian's dataset-{name}, which cl finds in {SYSTEM_DIRS[name]}"
    else:
        offline = ("; to work offline without them, apt-get install dataset-fashion-mnist and "
                   "train with --dataset fashion-mnist")
    return (f"{name}: the four idx files are not in {where}, and {why}; if you have a copy, "
            f"pass its folder with --data-dir, else fetch {files} into one folder{offline}")


def find_files(name: str, data_dir: str | os.PathLike | None = None, download: bool = True
               ) -> dict[str, Path]:
    """The four idx files of a data set: in data_dir/<Class>/raw or data_dir itself (plain or
    .gz), then the system's copy, else downloaded into data_dir/<Class>/raw when allowed."""
    spec = DATASETS[name]      # a name open_dataset has checked
    root = Path(data_dir) if data_dir else default_data_dir()
    raw = root / spec.tv_class / "raw"
    looked = [raw, root] + ([SYSTEM_DIRS[name]] if name in SYSTEM_DIRS else [])
    for folder in looked:
        found = _find_raw(folder)
        if found is not None:
            return found
    if not download:
        raise DataError(_missing_message(name, spec, looked, "downloading is off"))
    import torchvision.datasets as tvd
    try:
        for train in (True, False):
            getattr(tvd, spec.tv_class)(str(root), train=train, download=True)
    except Exception as e:  # torchvision raises RuntimeError or URLError subclasses offline
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        cause = (lines[-1] if lines else type(e).__name__)[:160].rstrip(".")
        raise DataError(_missing_message(name, spec, looked,
                                         f"downloading them failed ({cause})")) from e
    found = _find_raw(raw)
    if found is None:
        raise DataError(_missing_message(name, spec, looked, "the download did not bring them"))
    return found


def load(name: str, data_dir: str | os.PathLike | None = None, device: torch.device | str = "cpu",
         download: bool = True) -> Dataset:
    """Read both splits once, as uint8 tensors, onto the device."""
    files = find_files(name, data_dir, download)
    spec = DATASETS[name]
    splits = {}
    for split, (images_name, labels_name) in IDX_FILES.items():
        images = read_idx(files[images_name], 3)
        labels = read_idx(files[labels_name], 1).long()
        if images.shape[0] != labels.shape[0] or images.shape[0] == 0:
            raise DataError(f"{name}: the {split} idx files disagree: {tuple(images.shape)} images "
                            f"for {tuple(labels.shape)} labels ({files[images_name]})")
        if int(labels.max()) >= len(spec.classes):
            raise DataError(f"{files[labels_name]}: {split} labels must lie in "
                            f"0..{len(spec.classes) - 1}, found {int(labels.max())}")
        splits[split] = Split(images.to(device), labels.to(device))
    return Dataset(name, spec.classes, spec.mean, spec.std, splits["train"], splits["test"])


@functools.lru_cache(maxsize=16)
def _channel_tensors(mean: tuple[float, ...], std: tuple[float, ...], device: torch.device
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """[1, C, 1, 1] shift and scale on the device, made once per (stats, device): a fresh small
    tensor per batch would be a host-to-device copy in the loop."""
    def column(v):
        return torch.tensor([x * 255.0 for x in v], device=device).view(1, -1, 1, 1)
    return column(mean), column(std)


def normalize(images: torch.Tensor, mean: Stats, std: Stats) -> torch.Tensor:
    """uint8 [B, H, W] -> float [B, 1, H, W], or uint8 [B, H, W, C] -> float [B, C, H, W] in
    channels_last memory; zero mean and unit variance per channel over the dataset."""
    if images.ndim == 3:
        m = mean if isinstance(mean, (int, float)) else mean[0]
        s = std if isinstance(std, (int, float)) else std[0]
        return images.unsqueeze(1).float().sub_(m * 255.0).div_(s * 255.0)
    c = images.shape[3]
    means = (float(mean),) * c if isinstance(mean, (int, float)) else tuple(map(float, mean))
    stds = (float(std),) * c if isinstance(std, (int, float)) else tuple(map(float, std))
    if len(means) != c or len(stds) != c:
        raise ValueError(f"{c}-channel images need {c} means and stds, got {len(means)} and {len(stds)}")
    shift, scale = _channel_tensors(means, stds, images.device)
    return images.permute(0, 3, 1, 2).float().sub_(shift).div_(scale)


def translate(images: torch.Tensor, shifts: torch.Tensor, pad: int) -> torch.Tensor:
    """Shift each image of a uint8 [B, H, W] or [B, H, W, C] batch by its own (dy, dx) in
    [-pad, pad], zero-filled.

    One gather for the whole batch: no per-sample Python, no interpolation."""
    b, h, w = images.shape[:3]
    spatial = (pad, pad, pad, pad) if images.ndim == 3 else (0, 0, pad, pad, pad, pad)
    padded = torch.nn.functional.pad(images, spatial)
    rows = torch.arange(h, device=images.device) + (pad - shifts[:, 0:1])   # [B, H]
    cols = torch.arange(w, device=images.device) + (pad - shifts[:, 1:2])   # [B, W]
    batch = torch.arange(b, device=images.device)[:, None, None]
    return padded[batch, rows[:, :, None], cols[:, None, :]]


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The CPU generator of one epoch: a pure function of (seed, epoch), so a run resumed at any
    epoch draws the same batches as one that never stopped."""
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


def batch_slices(n: int, batch_size: int, start: int = 0, rank: int = 0, world: int = 1) -> list[slice]:
    """Positions in the epoch's order of each batch this rank trains on.

    Batch b covers [b * batch_size, (b + 1) * batch_size); under DDP rank r takes every world-th
    image of it from r on, so the ranks together train on exactly the single-process batch. The
    last partial batch is kept unless it has fewer than two images per rank: BatchNorm cannot
    train on one value per channel, and every rank must take part in every step."""
    slices = [slice(lo + rank, min(lo + batch_size, n), world)
              for lo in range(0, n, batch_size)]
    if slices and n % batch_size and n % batch_size < 2 * world:
        slices.pop()
    return slices[start:]


def batches_per_epoch(n: int, batch_size: int, world: int = 1) -> int:
    return len(batch_slices(n, batch_size, 0, 0, world))


def train_batches(split: Split, batch_size: int, seed: int, epoch: int, augment: int,
                  mean: Stats, std: Stats, start: int = 0, rank: int = 0, world: int = 1
                  ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Normalised (and augmented) batches of one epoch, drawn from a seeded permutation.

    The permutation and shifts are drawn once per epoch on the CPU and copied to the device in one
    transfer each, so the loop itself never talks to the host. Under DDP (world > 1) each rank
    draws the same permutation and yields its shard of every batch (see batch_slices)."""
    n = len(split)
    g = epoch_generator(seed, epoch)
    order = torch.randperm(n, generator=g)
    shifts = None
    if augment:
        shifts = torch.randint(-augment, augment + 1, (n, 2), generator=g)
        shifts = shifts.to(split.labels.device, non_blocking=True)
    slices = batch_slices(n, batch_size, start, rank, world)
    for s, (images, idx) in zip(slices, split.gather_batches(order, slices)):
        if shifts is not None:
            images = translate(images, shifts[s], augment)
        yield normalize(images, mean, std), split.labels.index_select(0, idx)


def eval_batches(split: Split, batch_size: int, mean: Stats, std: Stats
                 ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The split in order, normalised, without augmentation."""
    for images, labels in split.ordered_batches(batch_size):
        yield normalize(images, mean, std), labels
