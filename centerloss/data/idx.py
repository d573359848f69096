"""The idx family (MNIST, Fashion-MNIST, KMNIST): where their four idx files are found, or
fetched, and how they are read, onto the device as a Dataset."""
from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import torch

from centerloss.data.types import Dataset, Split, default_data_dir
from centerloss.errors import DataError
from centerloss.store.files import missing_folders, remove_empty_folders


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


MAX_IDX_BYTES = 2 << 30       # what one idx file may declare: EMNIST's largest is 0.55 GB


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
            if opener is open and size > os.path.getsize(path) - len(head):
                raise DataError(f"{path}: holds {os.path.getsize(path) - len(head)} bytes of {kind} "
                                f"where its header declares {size} {shape}; the file is truncated "
                                f"or damaged: fetch it again")
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
    created = missing_folders(raw)
    try:
        for train in (True, False):
            getattr(tvd, spec.tv_class)(str(root), train=train, download=True)
    except Exception as e:  # torchvision raises RuntimeError or URLError subclasses offline
        remove_empty_folders(created)       # a failed download leaves no empty folders behind
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

