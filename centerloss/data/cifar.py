"""CIFAR-10 from its binary version (cifar-10-batches-bin), read as plain bytes.

torchvision's CIFAR10 class reads the python version, whose batch files are pickles: unpickling
a file fetched from the internet can run code, so cl never does it. The binary version holds the
same images as fixed-size records (1 label byte, then 1024 red, 1024 green and 1024 blue bytes of
a 32x32 image, row by row) that numpy reads without any interpretation."""
from __future__ import annotations

import os
import tarfile
from pathlib import Path

import numpy as np
import torch

from centerloss.data.types import Dataset, Split, default_data_dir
from centerloss.errors import DataError
from centerloss.store.files import missing_folders, read_bytes, remove_empty_folders

FOLDER = "cifar-10-batches-bin"
URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
MD5 = "c32a1d4ab5d03f1284b67883e8d87530"
TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
TEST_FILES = ("test_batch.bin",)
CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
SIDE = 32
RECORD = 1 + 3 * SIDE * SIDE
MAX_BATCH_BYTES = 64 << 20     # a batch file is 30,730,000 bytes: 10,000 records
# Per-channel mean and standard deviation of the 50,000 training images, in [0, 1].
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)


def read_batches(paths: list[Path]) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 [N, 32, 32, 3] images and int64 [N] labels from binary batch files."""
    images, labels = [], []
    for path in paths:
        raw = np.frombuffer(read_bytes(path, MAX_BATCH_BYTES, "CIFAR-10 batch"), dtype=np.uint8)
        if raw.size == 0 or raw.size % RECORD:
            raise DataError(f"cifar10: {path} is {raw.size} bytes, not a whole number of "
                            f"{RECORD}-byte records; delete it and fetch {URL} again")
        records = raw.reshape(-1, RECORD)
        labels.append(records[:, 0].astype(np.int64))
        # planes [N, 3, 32, 32] -> channels last [N, 32, 32, 3], the layout cl keeps images in
        images.append(records[:, 1:].reshape(-1, 3, SIDE, SIDE).transpose(0, 2, 3, 1))
    y = torch.from_numpy(np.concatenate(labels))
    if int(y.max()) >= len(CLASSES):
        raise DataError(f"cifar10: labels must lie in 0..{len(CLASSES) - 1}, found {int(y.max())}")
    return torch.from_numpy(np.ascontiguousarray(np.concatenate(images))), y


def is_unpacked(folder: Path) -> bool:
    return all((folder / f).is_file() for f in TRAIN_FILES + TEST_FILES)


def _extract(archive: Path, root: Path) -> None:
    """Only the batch files and the class list, as regular files, under root/FOLDER: no member
    of the archive chooses where it lands."""
    wanted = {f"{FOLDER}/{f}" for f in TRAIN_FILES + TEST_FILES + ("batches.meta.txt",)}
    dest = root / FOLDER
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar:
            if member.name in wanted and member.isfile() and member.size <= MAX_BATCH_BYTES:
                target = dest / Path(member.name).name
                tmp = target.with_name(target.name + ".tmp")
                with tar.extractfile(member) as fin, open(tmp, "wb") as fout:
                    fout.write(fin.read())
                os.replace(tmp, target)


def locate(data_dir: str | os.PathLike | None = None, download: bool = True) -> Path:
    """The folder holding the binary batches: <root>/cifar-10-batches-bin or <root> itself,
    extracted from cifar-10-binary.tar.gz in root if it is there, else downloaded."""
    root = Path(data_dir) if data_dir else default_data_dir()
    for folder in (root / FOLDER, root):
        if is_unpacked(folder):
            return folder
    archive = root / Path(URL).name
    hint = f"download {URL} by hand into {root}"
    if (root / "cifar-10-batches-py").is_dir():
        hint += ("; the cifar-10-batches-py folder there is the pickled python version, "
                 "which cl does not read because unpickling a download can run code")
    if not archive.is_file():
        if not download:
            raise DataError(f"cifar10: no {FOLDER} in {root} and downloading is off; {hint}")
        from torchvision.datasets.utils import download_url
        part = root / f".{archive.name}.part"      # renamed only once whole and checked
        created = missing_folders(root)
        try:
            download_url(URL, str(root), part.name, MD5)   # checks the MD5
            os.replace(part, archive)
        except Exception as e:  # URLError, RuntimeError offline or on a bad checksum
            part.unlink(missing_ok=True)
            remove_empty_folders(created)
            raise DataError(f"cifar10: no {FOLDER} in {root} and the download failed "
                            f"({type(e).__name__}); {hint}") from e
    try:
        _extract(archive, root)
    except (tarfile.TarError, OSError, EOFError) as e:
        raise DataError(f"cifar10: cannot unpack {archive} ({e}); delete it and fetch it again") from e
    if not is_unpacked(root / FOLDER):
        raise DataError(f"cifar10: {archive} does not hold the binary batches; {hint}")
    return root / FOLDER


def _classes(folder: Path) -> tuple[str, ...]:
    meta = folder / "batches.meta.txt"
    if meta.is_file():
        text = read_bytes(meta, 1 << 16, "class list").decode("utf-8", "replace")
        names = tuple(line.strip() for line in text.splitlines() if line.strip())
        if len(names) == len(CLASSES):
            return names
    return CLASSES


def load_cifar10(data_dir: str | os.PathLike | None = None, device: torch.device | str = "cpu",
                 download: bool = True) -> Dataset:
    """Both splits once, as uint8 [N, 32, 32, 3] tensors, onto the device."""
    folder = locate(data_dir, download)
    splits = {}
    for name, files in (("train", TRAIN_FILES), ("test", TEST_FILES)):
        images, labels = read_batches([folder / f for f in files])
        splits[name] = Split(images.to(device), labels.to(device))
    return Dataset("cifar10", _classes(folder), MEAN, STD, splits["train"], splits["test"])
