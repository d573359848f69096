"""Batches of a data set, made on the device it lies on: normalisation and augmentation are done
on whole batches there, so no per-sample Python or PIL work sits in the training loop."""
from __future__ import annotations

import functools
from typing import Iterator

import torch

from centerloss.data.types import Split, Stats


@functools.lru_cache(maxsize=16)
def _channel_tensors(mean: tuple[float, ...], std: tuple[float, ...], device: torch.device
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """[1, C, 1, 1] shift and scale on the device, made once per (stats, device): a fresh small
    tensor per batch would be a host-to-device copy in the loop."""
    def column(v):
        return torch.tensor([x * 255.0 for x in v], device=device).view(1, -1, 1, 1)
    return column(mean), column(std)


def normalize(images: torch.Tensor, mean: Stats, std: Stats) -> torch.Tensor:
    """uint8 [B, H, W] -> float [B, 1, H, W], or uint8 [B, H, W, C] -> float [B, C, H, W] in
    channels_last memory; zero mean and unit variance per channel over the dataset."""
    if images.ndim == 3:
        m = mean if isinstance(mean, (int, float)) else mean[0]
        s = std if isinstance(std, (int, float)) else std[0]
        return images.unsqueeze(1).float().sub_(m * 255.0).div_(s * 255.0)
    c = images.shape[3]
    means = (float(mean),) * c if isinstance(mean, (int, float)) else tuple(map(float, mean))
    stds = (float(std),) * c if isinstance(std, (int, float)) else tuple(map(float, std))
    if len(means) != c or len(stds) != c:
        raise ValueError(f"{c}-channel images need {c} means and stds, got {len(means)} and {len(stds)}")
    shift, scale = _channel_tensors(means, stds, images.device)
    return images.permute(0, 3, 1, 2).float().sub_(shift).div_(scale)


def translate(images: torch.Tensor, shifts: torch.Tensor, pad: int) -> torch.Tensor:
    """Shift each image of a uint8 [B, H, W] or [B, H, W, C] batch by its own (dy, dx) in
    [-pad, pad], zero-filled.

    One gather for the whole batch: no per-sample Python, no interpolation."""
    b, h, w = images.shape[:3]
    spatial = (pad, pad, pad, pad) if images.ndim == 3 else (0, 0, pad, pad, pad, pad)
    padded = torch.nn.functional.pad(images, spatial)
    rows = torch.arange(h, device=images.device) + (pad - shifts[:, 0:1])   # [B, H]
    cols = torch.arange(w, device=images.device) + (pad - shifts[:, 1:2])   # [B, W]
    batch = torch.arange(b, device=images.device)[:, None, None]
    return padded[batch, rows[:, :, None], cols[:, None, :]]


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The CPU generator of one epoch: a pure function of (seed, epoch), so a run resumed at any
    epoch draws the same batches as one that never stopped."""
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


def batch_slices(n: int, batch_size: int, start: int = 0, rank: int = 0, world: int = 1) -> list[slice]:
    """Positions in the epoch's order of each batch this rank trains on.

    Batch b covers [b * batch_size, (b + 1) * batch_size); under DDP rank r takes every world-th
    image of it from r on, so the ranks together train on exactly the single-process batch. The
    last partial batch is kept unless it has fewer than two images per rank: BatchNorm cannot
    train on one value per channel, and every rank must take part in every step."""
    slices = [slice(lo + rank, min(lo + batch_size, n), world)
              for lo in range(0, n, batch_size)]
    if slices and n % batch_size and n % batch_size < 2 * world:
        slices.pop()
    return slices[start:]


def batches_per_epoch(n: int, batch_size: int, world: int = 1) -> int:
    return len(batch_slices(n, batch_size, 0, 0, world))


def train_batches(split: Split, batch_size: int, seed: int, epoch: int, augment: int,
                  mean: Stats, std: Stats, start: int = 0, rank: int = 0, world: int = 1
                  ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Normalised (and augmented) batches of one epoch, drawn from a seeded permutation.

    The permutation and shifts are drawn once per epoch on the CPU and copied to the device in one
    transfer each, so the loop itself never talks to the host. Under DDP (world > 1) each rank
    draws the same permutation and yields its shard of every batch (see batch_slices)."""
    n = len(split)
    g = epoch_generator(seed, epoch)
    order = torch.randperm(n, generator=g)
    shifts = None
    if augment:
        shifts = torch.randint(-augment, augment + 1, (n, 2), generator=g)
        shifts = shifts.to(split.labels.device, non_blocking=True)
    slices = batch_slices(n, batch_size, start, rank, world)
    for s, (images, idx) in zip(slices, split.gather_batches(order, slices)):
        if shifts is not None:
            images = translate(images, shifts[s], augment)
        yield normalize(images, mean, std), split.labels.index_select(0, idx)


def eval_batches(split: Split, batch_size: int, mean: Stats, std: Stats
                 ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """The split in order, normalised, without augmentation."""
    for images, labels in split.ordered_batches(batch_size):
        yield normalize(images, mean, std), labels
