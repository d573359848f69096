"""Small, easy idx data sets in torchvision's raw layout, so that the real loader runs in tests."""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np


def write_idx_images(path: Path, images: np.ndarray) -> None:
    n, h, w = images.shape
    path.write_bytes(struct.pack(">IIII", 0x00000803, n, h, w) + images.astype(np.uint8).tobytes())


def write_idx_labels(path: Path, labels: np.ndarray) -> None:
    path.write_bytes(struct.pack(">II", 0x00000801, len(labels)) + labels.astype(np.uint8).tobytes())


def easy_images(labels: np.ndarray, rng: np.random.Generator, size: int = 28) -> np.ndarray:
    """Class k is a bright 6x6 square at one of ten places on a noisy background."""
    images = rng.integers(0, 60, (len(labels), size, size))
    for i, k in enumerate(labels):
        r, c = 3 + (k // 5) * 14, 2 + (k % 5) * 5
        images[i, r:r + 6, c:c + 4] = 255 - rng.integers(0, 40)
    return images.astype(np.uint8)


def make_dataset(root: Path, tv_class: str = "MNIST", n_train: int = 600, n_test: int = 200,
                 seed: int = 0) -> Path:
    """Write train and test idx files under root/<tv_class>/raw and return root."""
    rng = np.random.default_rng(seed)
    raw = Path(root) / tv_class / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = np.arange(n) % 10
        rng.shuffle(labels)
        write_idx_images(raw / f"{prefix}-images-idx3-ubyte", easy_images(labels, rng))
        write_idx_labels(raw / f"{prefix}-labels-idx1-ubyte", labels)
    return Path(root)
