"""A saved model on the runtime's device, and its features and logits over a whole split."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch
import torch.nn.functional as F

from centerloss.data.batches import eval_batches
from centerloss.data.types import Split, Stats
from centerloss.device import accel, cpu
from centerloss.device.runtime import Runtime
from centerloss.model.build import build_from_checkpoint
from centerloss.model.fold import fold_batchnorm
from centerloss.model.nets import place
from centerloss.store.checkpoint import Checkpoint, load_checkpoint


@torch.inference_mode()
def infer(model: torch.nn.Module, split: Split, mean: Stats, std: Stats,
          runtime: Runtime, batch_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(features, logits) of a whole split in fp32, on the device, in batches of batch_size
    (default: the size that suits the device, accel.inference_batch_size)."""
    feats, logits = [], []
    for f, z, _ in _forward(model, split, mean, std, runtime, batch_size):
        feats.append(f)
        logits.append(z)
    return torch.cat(feats), torch.cat(logits)


@dataclass
class Outcomes:
    """What evaluation keeps of a split's forward pass: images x classes logits would not fit
    memory at 20,000 identities, so each batch's are reduced to a prediction and a loss."""
    features: torch.Tensor          # fp32 [N, D]
    predictions: torch.Tensor       # int64 [N], the argmax of the logits
    cross_entropy: torch.Tensor     # fp32 [N], of each image's own label


@torch.inference_mode()
def infer_outcomes(model: torch.nn.Module, split: Split, mean: Stats, std: Stats,
                   runtime: Runtime, batch_size: int | None = None) -> Outcomes:
    """infer(), with each batch's logits reduced to its predictions and cross-entropies."""
    feats, preds, losses = [], [], []
    for f, z, y in _forward(model, split, mean, std, runtime, batch_size):
        feats.append(f)
        preds.append(z.argmax(1))
        losses.append(F.cross_entropy(z, y, reduction="none"))
    return Outcomes(torch.cat(feats), torch.cat(preds), torch.cat(losses))


# A batch whose logits take this much is followed by a trim of the C heap: at 20,000 classes
# (10 MB of logits a batch) glibc kept the freed blocks, fragmented by the small tensors kept
# between them, and `cl eval` grew to 2.7 GB. Below it a trim only hands back pages the next
# batch faults in again: trimming after every batch of 128 MNIST images cost LeNets++'s
# evaluation a third of its speed (4,078 against 6,296 images/s, 225,000 page faults a pass of
# 4,096 images against 600; docs/performance.md). 1 MiB is 4,096 classes in bf16 at batch 128.
TRIM_AFTER_LOGITS_BYTES = 1 << 20


def _forward(model: torch.nn.Module, split: Split, mean: Stats, std: Stats, runtime: Runtime,
             batch_size: int | None) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(fp32 features, fp32 logits, labels) of each batch of the split, in order."""
    batch_size = batch_size or accel.inference_batch_size(runtime.device)
    model.eval()
    model = fold_batchnorm(model)           # the same function, one pass fewer per conv
    with runtime.autocast(), accel.cudnn_mode(autotune=True):
        for x, y in eval_batches(split, batch_size, mean, std):
            f, z = model(x.contiguous(memory_format=torch.channels_last))
            large = z.numel() * z.element_size() >= TRIM_AFTER_LOGITS_BYTES
            yield f.float(), z.float(), y.to(z.device)
            del f, z
            if large:
                cpu.release_free_memory()  # a batch's logits, freed, back to the system


def load_model(path: Path | str, runtime: Runtime) -> tuple[Checkpoint, torch.nn.Module]:
    """(checkpoint, its model on the runtime's device) for the commands that read a saved model:
    eval, embed and pairs verification."""
    ckpt = load_checkpoint(Path(path))
    return ckpt, place(build_from_checkpoint(ckpt, path), runtime.device)
