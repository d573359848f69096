"""A saved model on the runtime's device, and its features and logits over a whole split."""
from __future__ import annotations

from pathlib import Path

import torch

from centerloss.data.batches import eval_batches
from centerloss.data.types import Split, Stats
from centerloss.device import accel
from centerloss.device.runtime import Runtime
from centerloss.model.build import build_from_checkpoint
from centerloss.store.checkpoint import Checkpoint, load_checkpoint


@torch.inference_mode()
def infer(model: torch.nn.Module, split: Split, mean: Stats, std: Stats,
          runtime: Runtime, batch_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(features, logits) of a whole split in fp32, on the device, in batches of batch_size
    (default: the size that suits the device, accel.inference_batch_size)."""
    batch_size = batch_size or accel.inference_batch_size(runtime.device)
    model.eval()
    feats, logits = [], []
    with runtime.autocast(), accel.cudnn_mode(autotune=True):
        for x, _ in eval_batches(split, batch_size, mean, std):
            f, z = model(x.contiguous(memory_format=torch.channels_last))
            feats.append(f.float())
            logits.append(z.float())
    return torch.cat(feats), torch.cat(logits)


def load_model(path: Path | str, runtime: Runtime) -> tuple[Checkpoint, torch.nn.Module]:
    """(checkpoint, its model on the runtime's device) for the commands that read a saved model:
    eval, embed and pairs verification."""
    ckpt = load_checkpoint(Path(path))
    return ckpt, build_from_checkpoint(ckpt, path).to(runtime.device)
