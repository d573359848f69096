"""Where and how a model runs: the device, the precision, and inference over a whole split."""
from __future__ import annotations

import torch

from pathlib import Path

from . import accel
from . import checkpoint as ckpt_io
from . import data as data_mod
from .errors import TrainError


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise TrainError("--device cuda: no CUDA GPU is visible to torch; use --device auto or cpu")
    if name == "mps" and not torch.backends.mps.is_available():
        raise TrainError("--device mps: Apple's MPS is not available here; use --device auto or cpu")
    if name not in ("cuda", "mps", "cpu"):
        raise TrainError(f"unknown device {name!r}; choose one of: auto, cuda, mps, cpu")
    return torch.device(name)


def native_bf16(device: torch.device) -> bool:
    """Whether the device computes bf16 natively, so that autocast speeds it up."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    return False


def resolve_precision(name: str, device: torch.device) -> str:
    if name == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    if name == "bf16" and device.type == "mps":
        raise TrainError("--precision bf16 is not supported on MPS; use fp32")
    return name


def autocast(device: torch.device, precision: str):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


@torch.inference_mode()
def infer(model: torch.nn.Module, split: data_mod.Split, mean: data_mod.Stats, std: data_mod.Stats,
          device: torch.device, precision: str, batch_size: int | None = None
          ) -> tuple[torch.Tensor, torch.Tensor]:
    """(features, logits) of a whole split in fp32, on the device, in batches of batch_size
    (default: the size that suits the device, accel.inference_batch_size)."""
    batch_size = batch_size or accel.inference_batch_size(device)
    model.eval()
    feats, logits = [], []
    with autocast(device, precision), accel.cudnn_mode(autotune=True):
        for x, _ in data_mod.eval_batches(split, batch_size, mean, std):
            f, z = model(x.contiguous(memory_format=torch.channels_last))
            feats.append(f.float())
            logits.append(z.float())
    return torch.cat(feats), torch.cat(logits)


def load_model(path: Path | str, device: str = "auto", precision: str = "auto"
               ) -> tuple[ckpt_io.Checkpoint, torch.nn.Module, torch.device, str]:
    """(checkpoint, its model on the device, the device, the precision) for the commands that
    read a saved model: eval, embed and pairs verification."""
    ckpt = ckpt_io.load_checkpoint(Path(path))
    dev = resolve_device(device)
    prec = resolve_precision(precision, dev)
    return ckpt, ckpt_io.build_from_checkpoint(ckpt, path).to(dev), dev, prec
