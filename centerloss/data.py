"""Datasets as uint8 tensors on the training device; batching, normalisation and augmentation
done on whole batches on that device, so no per-sample Python or PIL work sits in the loop."""
from __future__ import annotations

import gzip
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch


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


class DataError(Exception):
    """The data cannot be found or read; the message says what was looked for and how to get it."""


def default_data_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "cl" / "data"


@dataclass
class Split:
    images: torch.Tensor        # uint8 [N, H, W] (grayscale) on the device
    labels: torch.Tensor        # int64 [N] on the device

    def __len__(self) -> int:
        return self.labels.shape[0]


@dataclass
class Dataset:
    name: str
    classes: tuple[str, ...]
    mean: float
    std: float
    train: Split
    test: Split

    def split(self, name: str) -> Split:
        if name not in ("train", "test"):
            raise ValueError(f"unknown split {name!r}; choose train or test")
        return self.train if name == "train" else self.test


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


def _stage(found: dict[str, Path], raw: Path) -> None:
    """Put the idx files, uncompressed, where torchvision's reader expects them."""
    raw.mkdir(parents=True, exist_ok=True)
    for name, src in found.items():
        dst = raw / name
        if dst.is_file() and dst.stat().st_size > 0:
            continue
        tmp = dst.with_name(dst.name + ".tmp")
        opener = gzip.open if src.suffix == ".gz" else open
        try:
            with opener(src, "rb") as fin, open(tmp, "wb") as fout:
                shutil.copyfileobj(fin, fout)
            os.replace(tmp, dst)
        finally:
            tmp.unlink(missing_ok=True)       # a truncated .gz must not leave half a file


def _missing_message(name: str, spec: DatasetSpec, root: Path, looked: list[Path], why: str) -> str:
    files = ", ".join(f for pair in IDX_FILES.values() for f in pair)
    where = "; ".join(str(p) for p in looked)
    hint = f"download {spec.url} by hand into {root / spec.tv_class / 'raw'}"
    if name in SYSTEM_DIRS:
        hint += f", or install Debian's dataset-{name} ({SYSTEM_DIRS[name]})"
    return f"{name}: could not find {files} (plain or .gz) in {where} and {why}; {hint}"


def locate(name: str, data_dir: str | os.PathLike | None = None, download: bool = True) -> Path:
    """Root folder holding <Class>/raw/<idx files> for torchvision, staging or downloading if needed."""
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; choose one of: {', '.join(DATASETS)}")
    spec = DATASETS[name]
    root = Path(data_dir) if data_dir else default_data_dir()
    raw = root / spec.tv_class / "raw"
    looked = [raw, root] + ([SYSTEM_DIRS[name]] if name in SYSTEM_DIRS else [])
    for folder in looked:
        found = _find_raw(folder)
        if found is None:
            continue
        if folder != raw or any(p.suffix == ".gz" and not (raw / n).is_file() for n, p in found.items()):
            try:
                _stage(found, raw)
            except (OSError, EOFError) as e:   # EOFError: a truncated .gz
                raise DataError(f"{name}: cannot unpack {folder} into {raw} "
                                f"({getattr(e, 'strerror', None) or e}); fetch the files again") from e
        return root
    if not download:
        raise DataError(_missing_message(name, spec, root, looked, "downloading is off"))
    import torchvision.datasets as tvd
    try:
        for train in (True, False):
            getattr(tvd, spec.tv_class)(str(root), train=train, download=True)
    except Exception as e:  # torchvision raises RuntimeError or URLError subclasses offline
        lines = [line.strip() for line in str(e).splitlines() if line.strip()]
        cause = (lines[-1] if lines else type(e).__name__)[:160]
        raise DataError(_missing_message(name, spec, root, looked,
                                         f"the download failed ({cause})")) from e
    return root


def load(name: str, data_dir: str | os.PathLike | None = None, device: torch.device | str = "cpu",
         download: bool = True) -> Dataset:
    """Read both splits once, as uint8 tensors, onto the device."""
    import torchvision.datasets as tvd
    root = locate(name, data_dir, download)
    spec = DATASETS[name]
    splits = {}
    for split in ("train", "test"):
        try:
            ds = getattr(tvd, spec.tv_class)(str(root), train=split == "train", download=False)
        except Exception as e:  # a truncated or corrupt idx file
            raw = root / spec.tv_class / "raw"
            raise DataError(f"{name}: the {split} idx files in {raw} cannot be read ({e}); "
                            f"delete them and fetch them again") from e
        images, labels = ds.data, ds.targets.long()
        if images.ndim != 3 or images.shape[0] != labels.shape[0] or images.shape[0] == 0:
            raise DataError(f"{name}: the {split} idx files disagree: {tuple(images.shape)} images "
                            f"for {tuple(labels.shape)} labels")
        if int(labels.min()) < 0 or int(labels.max()) >= len(spec.classes):
            raise DataError(f"{name}: {split} labels must lie in 0..{len(spec.classes) - 1}")
        splits[split] = Split(images.to(device), labels.to(device))
    return Dataset(name, spec.classes, spec.mean, spec.std, splits["train"], splits["test"])


def normalize(images: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    """uint8 [B, H, W] -> float [B, 1, H, W], zero mean and unit variance over the dataset."""
    return images.unsqueeze(1).float().sub_(mean * 255.0).div_(std * 255.0)


def translate(images: torch.Tensor, shifts: torch.Tensor, pad: int) -> torch.Tensor:
    """Shift each image of a uint8 [B, H, W] batch by its own (dy, dx) in [-pad, pad], zero-filled.

    One gather for the whole batch: no per-sample Python, no interpolation."""
    b, h, w = images.shape
    padded = torch.nn.functional.pad(images, (pad, pad, pad, pad))
    rows = torch.arange(h, device=images.device) + (pad - shifts[:, 0:1])   # [B, H]
    cols = torch.arange(w, device=images.device) + (pad - shifts[:, 1:2])   # [B, W]
    batch = torch.arange(b, device=images.device)[:, None, None]
    return padded[batch, rows[:, :, None], cols[:, None, :]]


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The CPU generator of one epoch: a pure function of (seed, epoch), so a run resumed at any
    epoch draws the same batches as one that never stopped."""
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


def train_batches(split: Split, batch_size: int, seed: int, epoch: int, augment: int,
                  mean: float, std: float, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Normalised (and augmented) batches of one epoch, drawn from a seeded permutation.

    The permutation and shifts are drawn once per epoch on the CPU and copied to the device in one
    transfer each, so the loop itself never talks to the host. The last partial batch is kept."""
    n = len(split)
    g = epoch_generator(seed, epoch)
    order = torch.randperm(n, generator=g).to(split.labels.device, non_blocking=True)
    shifts = None
    if augment:
        shifts = torch.randint(-augment, augment + 1, (n, 2), generator=g)
        shifts = shifts.to(split.labels.device, non_blocking=True)
    for lo in range(start * batch_size, n, batch_size):
        idx = order[lo:lo + batch_size]
        images = split.images.index_select(0, idx)
        if shifts is not None:
            images = translate(images, shifts[lo:lo + batch_size], augment)
        yield normalize(images, mean, std), split.labels.index_select(0, idx)


def eval_batches(split: Split, batch_size: int, mean: float, std: float
                 ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The split in order, normalised, without augmentation."""
    for lo in range(0, len(split), batch_size):
        yield normalize(split.images[lo:lo + batch_size], mean, std), split.labels[lo:lo + batch_size]
