"""How fast an image folder loads: decoding into memory, and batches resident vs streamed.

Writes the first --images Fashion-MNIST training images as PNG files (class subfolders, like a
face set) into a temporary folder, then times, with the data pipeline alone (no model):
  - load_folder resident: scan + decode of every file into one uint8 tensor, in images/s;
  - one epoch of train_batches from memory and from disk (streamed), in images/s.

    python bench/folder_bench.py --images 10000 --workers 0 1 2
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from centerloss.data import batches as batch_mod, idx as idx_mod
from centerloss.data.folder import load_folder


def export(root: Path, n: int, channels: int) -> None:
    ds = idx_mod.load("fashion-mnist", device="cpu", download=False)
    images, labels = ds.train.images[:n].numpy(), ds.train.labels[:n].tolist()
    for i, (img, y) in enumerate(zip(images, labels)):
        folder = root / f"{y}_{ds.classes[y].replace('/', '-')}"
        folder.mkdir(exist_ok=True)
        pixels = img if channels == 1 else np.repeat(img[..., None], 3, axis=2)
        Image.fromarray(pixels).save(folder / f"{i:06d}.png")


def epoch_rate(split, batch_size: int, mean, std) -> float:
    start = time.perf_counter()
    seen, finite = 0, torch.tensor(True)
    for x, _ in batch_mod.train_batches(split, batch_size, 0, 1, 2, mean, std):
        seen += x.shape[0]
        finite &= torch.isfinite(x).all()
    rate = seen / (time.perf_counter() - start)
    if not finite:
        raise SystemExit("error: a batch held non-finite values; no rate is printed")
    return rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=10000, help="training images to export")
    ap.add_argument("--channels", type=int, default=1, choices=(1, 3), help="write gray or RGB PNGs")
    ap.add_argument("--size", type=int, default=28, help="--image-size to decode to")
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 1], help="worker counts to try")
    ap.add_argument("--batch-size", type=int, default=128)
    args = ap.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t = time.perf_counter()
        export(root, args.images, args.channels)
        print(f"wrote {args.images} PNGs in {time.perf_counter() - t:.1f} s")
        for workers in args.workers:
            t = time.perf_counter()
            ds = load_folder(root, "cpu", args.size, args.channels, 0, workers)
            load_s = time.perf_counter() - t
            n = len(ds.train) + len(ds.test)
            resident = epoch_rate(ds.train, args.batch_size, ds.mean, ds.std)
            streamed_ds = load_folder(root, "cpu", args.size, args.channels, 1e-6, workers)
            streamed = epoch_rate(streamed_ds.train, args.batch_size, ds.mean, ds.std)
            print(f"workers {workers}: resident load {n / load_s:,.0f} images/s ({load_s:.1f} s); "
                  f"epoch from memory {resident:,.0f} images/s, streamed from disk {streamed:,.0f} images/s")


if __name__ == "__main__":
    main()
