"""What a run checks about its data and its folder before anything on disk is removed or
written: a shape the model cannot take must fail before --overwrite erases the old run, not
inside the first training step."""
from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch

from centerloss.config import Config
from centerloss.data import batches as batch_mod
from centerloss.data.types import Dataset
from centerloss.errors import TrainError
from centerloss.model.nets import build_model


def check_out(cfg: Config, out: Path) -> None:
    """TrainError if --out lies inside an image-folder data set: the run would become a class."""
    if cfg.dataset != "folder" or not cfg.data_dir:
        return
    root, target = Path(os.path.realpath(cfg.data_dir)), Path(os.path.realpath(out))
    if target == root or root in target.parents:
        raise TrainError(f"--out {out} lies inside the data set folder {root}, where cl would "
                         f"read it as a class of images; choose an --out outside {root}")


def _plural(n: int, one: str) -> str:
    return f"{n:,} {one}" + ("" if n == 1 else "s")


def check_data(cfg: Config, ds: Dataset, world: int = 1) -> None:
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
            # the softmax head: a margin head's autocast has no meta kernel, and the trunk decides
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
