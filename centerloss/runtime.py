"""Where and how a command runs, resolved once: the device, the precision as an autocast context,
and the distributed context; then inference over a whole split through it.

A command builds one Runtime at its start (`Runtime.resolve`) and passes it down; code below asks
it (`runtime.autocast()`) and never tests a precision string again."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import accel
from . import checkpoint as ckpt_io
from . import batches as batch_mod
from . import datasets as data_mod
from . import distributed, options
from .errors import TrainError


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    options.check("--device", name)
    if name == "cuda" and not torch.cuda.is_available():
        raise TrainError("--device cuda: no CUDA GPU is visible to torch; use --device auto or cpu")
    if name == "mps" and not torch.backends.mps.is_available():
        raise TrainError("--device mps: Apple's MPS is not available here; use --device auto or cpu")
    return torch.device(name)


def native_bf16(device: torch.device) -> bool:
    """Whether the device computes bf16 natively, so that autocast speeds it up."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    return False


@dataclass(frozen=True)
class Runtime:
    device: torch.device
    precision: str = "fp32"     # resolved: "fp32" or "bf16", never "auto"; for display and autocast()
    ctx: distributed.Context = field(default_factory=distributed.Context)

    @classmethod
    def resolve(cls, device: str = "auto", precision: str = "auto",
                ctx: distributed.Context | None = None) -> "Runtime":
        """The runtime a --device and --precision ask for; an OptionError for a name cl does not
        know (fp16 among them), a TrainError for a device or precision this machine lacks."""
        options.check("--precision", precision)
        ctx = ctx or distributed.Context()
        dev = ctx.device or resolve_device(device)
        if precision == "auto":
            precision = "bf16" if native_bf16(dev) else "fp32"
        if precision == "bf16" and dev.type == "mps":
            raise TrainError("--precision bf16 is not supported on MPS; use fp32")
        return cls(dev, precision, ctx)

    @property
    def is_main(self) -> bool:
        """Whether this process reports, evaluates and writes (rank 0, or the only process)."""
        return self.ctx.is_main

    def autocast(self) -> contextlib.AbstractContextManager:
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16")


@torch.inference_mode()
def infer(model: torch.nn.Module, split: data_mod.Split, mean: data_mod.Stats, std: data_mod.Stats,
          runtime: Runtime, batch_size: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(features, logits) of a whole split in fp32, on the device, in batches of batch_size
    (default: the size that suits the device, accel.inference_batch_size)."""
    batch_size = batch_size or accel.inference_batch_size(runtime.device)
    model.eval()
    feats, logits = [], []
    with runtime.autocast(), accel.cudnn_mode(autotune=True):
        for x, _ in batch_mod.eval_batches(split, batch_size, mean, std):
            f, z = model(x.contiguous(memory_format=torch.channels_last))
            feats.append(f.float())
            logits.append(z.float())
    return torch.cat(feats), torch.cat(logits)


def load_model(path: Path | str, runtime: Runtime) -> tuple[ckpt_io.Checkpoint, torch.nn.Module]:
    """(checkpoint, its model on the runtime's device) for the commands that read a saved model:
    eval, embed and pairs verification."""
    ckpt = ckpt_io.load_checkpoint(Path(path))
    return ckpt, ckpt_io.build_from_checkpoint(ckpt, path).to(runtime.device)
