"""Small generated data for tests, so that the real loaders run: idx sets in torchvision's raw
layout, image folders, CIFAR-10 binary batches, pairs files."""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
from PIL import Image


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


def class_image(k: int, rng: np.random.Generator, size: int = 16, rgb: bool = True) -> np.ndarray:
    """Class k: a bright block at one of a few places on noise, and in RGB a class-dependent tint."""
    big = easy_images(np.array([k]), rng, 28)[0]
    img = np.asarray(Image.fromarray(big).resize((size, size), Image.Resampling.BILINEAR))
    if not rgb:
        return img
    tint = np.array([(k * 70) % 256, (k * 130) % 256, (k * 200) % 256], dtype=np.float64)
    return np.clip(img[..., None] * 0.7 + tint * 0.3, 0, 255).astype(np.uint8)


def make_folder(root: Path, classes: int = 4, per_class: int = 10, size: int = 16, rgb: bool = True,
                seed: int = 0, suffix: str = ".png") -> Path:
    """root/class_<k>/img_<i><suffix>, per_class images of each class."""
    rng = np.random.default_rng(seed)
    for k in range(classes):
        d = Path(root) / f"class_{k}"
        d.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(class_image(k, rng, size, rgb)).save(d / f"img_{i:03d}{suffix}")
    return Path(root)


def make_cifar_bin(root: Path, n_train: int = 50, n_test: int = 20, seed: int = 0) -> Path:
    """CIFAR-10's binary layout under root/cifar-10-batches-bin: 5 train batches, a test batch and
    batches.meta.txt. Record i's red plane holds i % 256 everywhere, green 1, blue 2, so tests can
    tell the planes apart and find each record."""
    folder = Path(root) / "cifar-10-batches-bin"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)

    def batch(path: Path, n: int, offset: int) -> None:
        records = np.zeros((n, 1 + 3072), dtype=np.uint8)
        records[:, 0] = rng.integers(0, 10, n)
        records[:, 1:1025] = (np.arange(offset, offset + n) % 256)[:, None]
        records[:, 1025:2049] = 1
        records[:, 2049:] = 2
        path.write_bytes(records.tobytes())

    per = n_train // 5
    for b in range(5):
        batch(folder / f"data_batch_{b + 1}.bin", per, b * per)
    batch(folder / "test_batch.bin", n_test, 0)
    (folder / "batches.meta.txt").write_text("\n".join(
        ["plane", "car", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]) + "\n\n")
    return folder


def write_png_gray(path: Path, value: int, size: int = 8) -> Path:
    Image.fromarray(np.full((size, size), value, dtype=np.uint8)).save(path)
    return path


def train_folder_run(root: Path) -> tuple[Path, Path]:
    """(image folder, run folder) of seed-net training on 4 classes of 16x16 RGB images."""
    from centerloss.config.config import Config
    from centerloss.train.loop import train
    data = make_folder(root / "images", classes=4, per_class=20, size=16)
    cfg = Config(model="seed", dataset="folder", data_dir=str(data), image_size=16, feature_dim=8, epochs=3,
                 batch_size=16, lr=0.05, device="cpu", workers=0, snapshot_train=0, augment=1)
    train(cfg, root / "run")
    return data, root / "run"
