"""Where and how a command runs, resolved once: the device, the precision as an autocast context,
and the distributed context.

A command builds one Runtime at its start (`Runtime.resolve`) and passes it down; code below asks
it (`runtime.autocast()`) and never tests a precision string again."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

import torch

from centerloss.config import check
from centerloss.config.options import DEVICES, PRECISIONS
from centerloss.device import distributed
from centerloss.errors import TrainError


def resolve_device(name: str) -> torch.device:
    """The device a --device names (checked where it came in: the CLI or Config.validate)."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name not in DEVICES:
        check("--device", name)       # a library caller's own string: the option's message
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
    compile_note: str = ""      # whether training runs compiled and why, for the start line

    @classmethod
    def resolve(cls, device: str = "auto", precision: str = "auto",
                ctx: distributed.Context | None = None) -> "Runtime":
        """The runtime a --device and --precision ask for; an OptionError for a name cl does not
        know (fp16 among them), a TrainError for a device or precision this machine lacks."""
        if precision not in PRECISIONS:
            check("--precision", precision)     # a library caller's own string
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
