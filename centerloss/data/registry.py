"""Every --dataset by name: the idx family (idx.py), CIFAR-10 (cifar.py) and image folders
(folder.py), as the types.py Dataset; and the input normalisation a saved model expects."""
from __future__ import annotations

import os
from pathlib import Path

import torch

from centerloss.config import Config, check
from centerloss.config.options import DATASET_NAMES
from centerloss.data.cifar import (
    FOLDER as CIFAR_FOLDER,
    MEAN as CIFAR_MEAN,
    STD as CIFAR_STD,
    is_unpacked as cifar_unpacked,
    load_cifar10,
)
from centerloss.data.folder import load_folder
from centerloss.data.idx import DATASETS, load
from centerloss.data.types import Dataset
from centerloss.errors import CheckpointError, DataError
from centerloss.store.checkpoint import Checkpoint


def open_dataset(name: str, data_dir: str | os.PathLike | None = None,
                 device: torch.device | str = "cpu", download: bool = True, image_size: int = 0,
                 channels: int = 0, memory_mb: int = 0, workers: int = -1) -> Dataset:
    """Any --dataset by name. image_size, channels, memory_mb and workers shape an image folder;
    the built-in sets come at their own size and channels, and asking otherwise is an error."""
    if name not in DATASET_NAMES:
        check("--dataset", name)       # a library caller's own string: the option's message
    if name == "folder":
        if not data_dir:
            raise DataError("--dataset folder needs --data-dir: a folder with one subfolder of "
                            "images per class")
        return load_folder(data_dir, device, image_size, channels, memory_mb, workers)
    if name == "cifar10":
        ds = load_cifar10(data_dir, device, download)
    else:
        ds = load(name, data_dir, device, download)
    c, h, w = ds.input_shape
    if image_size and (h, w) != (image_size, image_size):
        raise DataError(f"--image-size {image_size}: {name} images are {h}x{w}, and "
                        f"--image-size resizes only --dataset folder")
    if channels and channels != c:
        raise DataError(f"--channels {channels}: {name} images have {c}, and "
                        f"--channels applies only to --dataset folder")
    return ds


def dataset_for(cfg: Config, device: torch.device | str = "cpu", data_dir: str | None = None,
                from_checkpoint: bool = False) -> Dataset:
    """The data set a run's config names; data_dir overrides the config's folder.

    from_checkpoint: cfg came from a checkpoint, maybe a stranger's, so its data_dir is a path
    someone else chose. It is only read, and only if it exists: nothing is downloaded into it or
    created there, and a missing one asks for --data-dir."""
    download = True
    if from_checkpoint and not data_dir and cfg.data_dir:
        saved = Path(cfg.data_dir)
        # CIFAR-10 would be unpacked from its archive into that folder: only batches already
        # unpacked there are read
        if not saved.is_dir() or (cfg.dataset == "cifar10" and not any(
                cifar_unpacked(folder) for folder in (saved / CIFAR_FOLDER, saved))):
            raise DataError(f"{cfg.dataset}: the model was trained on data in {cfg.data_dir}, "
                            f"which is not here; pass --data-dir with a folder holding the "
                            f"{cfg.dataset} data")
        download = False
    return open_dataset(cfg.dataset, data_dir or cfg.data_dir or None, device, download,
                        image_size=cfg.image_size, channels=cfg.channels,
                        memory_mb=cfg.memory_mb, workers=cfg.workers)


def normalization_of(ckpt: Checkpoint, ds: Dataset | None = None) -> tuple[list[float], list[float]]:
    """The per-channel (mean, std) a checkpoint's model takes its inputs in, worked out here for
    every command that feeds one: those stored in the checkpoint; for one written before cl
    stored them, those of the data set ds (when the command has it) or of the built-in data set
    the checkpoint names."""
    if ckpt.normalization:
        return ckpt.normalization["mean"], ckpt.normalization["std"]
    if ds is not None:
        norm = ds.normalization()
        return norm["mean"], norm["std"]
    name = ckpt.config.dataset
    if name in DATASETS:
        return [DATASETS[name].mean], [DATASETS[name].std]
    if name == "cifar10":
        return list(CIFAR_MEAN), list(CIFAR_STD)
    raise CheckpointError(f"the checkpoint stores no input normalisation and was trained "
                          f"on {name!r}; retrain it with this version of cl")
