"""A tiny, fast training setup shared by the reliability tests: 48 generated training images in
batches of 16 (3 batches an epoch), the seed net, fp32 on the CPU so runs are bit-reproducible."""
from __future__ import annotations

from pathlib import Path

import torch
from idxdata import make_dataset

from centerloss.config.config import Config
from centerloss.store import checkpoint as ckpt_io

TIMING_KEYS = ("train_seconds", "train_images_per_s", "eval_seconds")


def make_data(root: Path) -> Path:
    return make_dataset(root, n_train=48, n_test=32)


def tiny_config(data_root: Path, **overrides) -> Config:
    settings = dict(model="seed", dataset="mnist", data_dir=str(data_root), epochs=3, batch_size=16,
                    device="cpu", precision="fp32", seed=0)
    settings.update(overrides)
    return Config(**settings)


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
