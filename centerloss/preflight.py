"""What a run checks about its data and its folder before anything on disk is removed or
written: a shape the model cannot take must fail before --overwrite erases the old run, not
inside the first training step. Also the data set's fingerprint, which --resume compares."""
from __future__ import annotations

import dataclasses
import hashlib
import warnings
from pathlib import Path

import torch

from . import batches as batch_mod
from . import datasets as data_mod
from .config import Config
from .errors import TrainError
from .folder import StreamedSplit
from .models import build_model

FINGERPRINT_SAMPLE = 4096   # images hashed per split: bounded time however large the set is


def check_out(cfg: Config, out: Path) -> None:
    """TrainError if --out lies inside an image-folder data set: the run would become a class."""
    if cfg.dataset != "folder" or not cfg.data_dir:
        return
    root, target = Path(cfg.data_dir).resolve(), Path(out).resolve()
    if target == root or root in target.parents:
        raise TrainError(f"--out {out} lies inside the data set folder {root}, where cl would "
                         f"read it as a class of images; choose an --out outside {root}")


def _plural(n: int, one: str) -> str:
    return f"{n:,} {one}" + ("" if n == 1 else "s")


def check_data(cfg: Config, ds: data_mod.Dataset, world: int = 1) -> None:
    """TrainError unless the model cfg names can train on ds, as it is, for at least one batch."""
    train_shape, test_shape = list(ds.train.image_shape), list(ds.test.image_shape)
    show = "x".join
    if train_shape != test_shape:
        raise TrainError(f"{ds.name}: train images are {show(map(str, train_shape))} (CxHxW) but "
                         f"test images are {show(map(str, test_shape))}; both splits need one shape")
    c, h, w = train_shape
    if h != w:
        raise TrainError(f"{ds.name}: images are {h}x{w}; cl's models take square images "
                         f"(an image folder is cropped square with --dataset folder)")
    n = len(ds.train)
    if batch_mod.batches_per_epoch(n, cfg.batch_size, world) < 1:
        raise TrainError(f"{ds.name}: the train split has {_plural(n, 'image')}, too few for one "
                         f"batch (BatchNorm needs at least {2 * world}); add training images")
    try:    # shapes only, on the meta device: costs nothing and allocates nothing
        with torch.device("meta"), warnings.catch_warnings():
            warnings.simplefilter("ignore")     # torch's notes on the zero-size layers of a misfit
            model = build_model(cfg.model, len(ds.classes), cfg.feature_dim, c, h)
            model.eval()
            model(torch.empty(1, c, h, w))
    except (RuntimeError, ValueError) as e:
        raise TrainError(f"--model {cfg.model} cannot take {h}x{w} images with {c} channel(s) "
                         f"({str(e).splitlines()[0][:120]}); use larger images or another "
                         f"--model") from e
    if cfg.augment > h // 4:
        raise TrainError(f"--augment {cfg.augment} would shift {h}x{h} images by more than a quarter "
                         f"of their side, leaving little of them; use --augment {h // 4} or less")


def fingerprint(ds: data_mod.Dataset) -> str:
    """A short hash of the data set's classes, sizes, labels and a fixed sample of its images:
    equal for the same data, different (in practice) for other data of the same name."""
    h = hashlib.sha256(repr((ds.name, list(ds.classes))).encode())
    for split in (ds.train, ds.test):
        n = len(split)
        h.update(repr((n, list(split.image_shape))).encode())
        h.update(split.labels.cpu().numpy().tobytes())
        pick = torch.linspace(0, n - 1, min(n, FINGERPRINT_SAMPLE)).long()
        images = getattr(split, "images", None)
        if images is not None:
            h.update(images.index_select(0, pick.to(images.device)).cpu().numpy().tobytes())
        else:   # a streamed folder: its files' names stand for its images
            h.update("\n".join(split.paths[i] for i in pick.tolist()).encode("utf-8", "replace"))
    return h.hexdigest()[:16]


def sample_split(split: data_mod.Split | StreamedSplit, k: int) -> data_mod.Split | StreamedSplit:
    """k images spread evenly over the split (all of it when it has no more), the same ones
    every epoch: what the train-feature snapshot shows."""
    n = len(split)
    if k >= n:
        return split
    pick = torch.linspace(0, n - 1, k).long()
    if getattr(split, "images", None) is not None:
        idx = pick.to(split.images.device)
        return data_mod.Split(split.images.index_select(0, idx),
                              split.labels.index_select(0, idx.to(split.labels.device)))
    return dataclasses.replace(split, paths=[split.paths[i] for i in pick.tolist()],
                               labels=split.labels.index_select(0, pick.to(split.labels.device)))
