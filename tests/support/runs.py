"""Tiny, fast training runs: the seed net, fp32 on the CPU so runs are bit-reproducible.

tiny_config alone is 48 generated training images in batches of 16 (3 batches an epoch, 3
epochs); QUICK is 2 epochs of 2 batches of 100 at a fixed rate, for the session's shared runs."""
from __future__ import annotations

from pathlib import Path

import torch

from centerloss.config.config import Config
from centerloss.store import checkpoint as ckpt_io
from support.data import make_dataset

TIMING_KEYS = ("train_seconds", "train_images_per_s", "eval_seconds")
QUICK = dict(epochs=2, batch_size=100, lr=0.05, augment=0, snapshot_train=150)


def make_data(root: Path) -> Path:
    return make_dataset(root, n_train=48, n_test=32)


def tiny_config(data_root: Path, **overrides) -> Config:
    settings = dict(model="seed", dataset="mnist", data_dir=str(data_root), epochs=3, batch_size=16,
                    device="cpu", precision="fp32", seed=0)
    settings.update(overrides)
    return Config(**settings)


def quick_config(data_root: Path, **overrides) -> Config:
    """tiny_config with QUICK's settings: 2 epochs of 2 batches on the session's 200 images."""
    return tiny_config(data_root, **{**QUICK, **overrides})


def small_run(root: Path) -> dict:
    """Generated data under root/data and a 2-epoch tiny run of it in root/run, with a 20-image
    train snapshot: the world the boundary and hostile-input tests break things in."""
    from centerloss.train.loop import train
    data = make_data(root / "data")
    run = root / "run"
    train(tiny_config(data, epochs=2, snapshot_train=20), run)
    return {"data": data, "run": run}


def cli_flags(cfg: Config) -> list[str]:
    return ["--model", cfg.model, "--data-dir", cfg.data_dir, "--epochs", str(cfg.epochs),
            "--batch-size", str(cfg.batch_size), "--device", cfg.device, "--precision",
            cfg.precision, "--seed", str(cfg.seed)]


def same_tensors(a: Path, b: Path) -> bool:
    """Whether two safetensors files hold the same tensors, bit for bit."""
    ta, _ = ckpt_io.read_tensors(a)
    tb, _ = ckpt_io.read_tensors(b)
    return ta.keys() == tb.keys() and all(
        ta[k].dtype == tb[k].dtype and torch.equal(ta[k], tb[k]) for k in ta)


def without_timings(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in history]
