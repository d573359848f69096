"""Speed settings that depend on the device: cuDNN autotuning, the inference batch, the optimizer
kernel, torch.compile. bench/variants.py measures each; README's Performance section has the figures.
"""
from __future__ import annotations

import importlib.util
import logging
import os
import shutil
from contextlib import contextmanager
from typing import Callable, Iterator

import torch
from torch import nn

from centerloss.device import isa_warmup
from centerloss.errors import CompileError
from centerloss.model import blocks as model_blocks

Forward = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


@contextmanager
def cudnn_mode(autotune: bool) -> Iterator[None]:
    """Set cuDNN's algorithm choice for the block, restoring the caller's settings after it.

    Autotuning times every candidate kernel and keeps the fastest, so two runs may keep different
    kernels that round differently. Training therefore runs without it and with deterministic
    kernels only, so that --seed gives the same weights bit for bit; inference, whose output never
    feeds back into the weights, autotunes. The flags are plain globals: harmless without CUDA."""
    cudnn = torch.backends.cudnn
    saved = cudnn.benchmark, cudnn.deterministic
    cudnn.benchmark, cudnn.deterministic = autotune, not autotune
    try:
        yield
    finally:
        cudnn.benchmark, cudnn.deterministic = saved


def inference_batch_size(device: torch.device) -> int:
    """Images per forward pass in evaluation and embedding. A GPU wants large batches to stay busy;
    a CPU is fastest on batches whose activations stay in its caches (docs/performance.md has the
    runs, bench/variants.py --infer measures it)."""
    return 2048 if device.type != "cpu" else 128


def fused_optimizer(device: torch.device) -> bool:
    """Whether SGD should use its fused kernel: on CUDA one launch updates every parameter, where
    the per-tensor Python loop would cost more than the update. On the CPU the fused step saves
    about 0.5 ms of a LeNets++ step (0.34 against 0.88 ms), but its rounding depends on where
    each tensor lies in memory, so a resumed run would no longer match an uninterrupted one bit for
    bit (tests/train/test_guard.py found it): the default implementation stays."""
    return device.type == "cuda"


def has_cpp_compiler() -> bool:
    """inductor builds its CPU kernels with a C++ compiler: CXX, g++, c++ or clang++ on PATH."""
    return any(name and shutil.which(name)
               for name in (os.environ.get("CXX", ""), "g++", "c++", "clang++"))


def check_compile(device: torch.device) -> None:
    """Raise CompileError unless torch.compile's backend can build kernels for the device: inductor
    needs a C++ compiler for the CPU and Triton for CUDA. Checked up front, because otherwise the
    failure surfaces as a long traceback at the first batch."""
    if device.type == "cpu":
        if not has_cpp_compiler():
            raise CompileError("--compile on the CPU needs a C++ compiler (g++ or clang++) on PATH; "
                               "install one or train without --compile")
    elif device.type == "cuda" and importlib.util.find_spec("triton") is None:
        raise CompileError("--compile on CUDA needs the triton package; install it or train "
                           "without --compile")


def compiled_forward(model: nn.Module, batch_size: int, device: torch.device,
                     on_compiled: Callable[[], None] | None = None, blocks: bool = False) -> Forward:
    """model's forward compiled for full training batches; on_compiled is called once, after the
    first compiled call returns (the compile done). With blocks, only each BatchNorm and the
    activation after it are compiled, one small graph per shape (model/blocks.py): most of the
    gain for about half the compile.

    Any other batch size (an epoch's last, partial batch) runs the eager model: compiling for a
    second shape would cost as much as the first compile (minutes on a CPU) for one batch an epoch.
    The compiled and the eager model share their parameters, and the caller keeps saving `model`,
    so checkpoints hold the usual parameter names."""
    check_compile(device)
    if blocks and not model_blocks.count(model):
        raise CompileError(f"compile: blocks compiles each BatchNorm with the activation after it, "
                           f"and {type(model).__name__} has no such pair in a Sequential; compile "
                           f"the whole model (--compile) instead")
    # inductor's C++ builder logs that a CUDA build of torch finds no CUDA runtime on a CPU-only
    # machine: a notice about torch's build, not about the run, and nothing a user can act on
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)
    # inductor's aggressive fusion merges the kernels of BatchNorm's, PReLU's and pooling's
    # backward that share inputs: 10% off a LeNets++ step on the AMX Xeon (docs/performance.md).
    # Not measured on a GPU, so left to inductor's defaults there.
    options = {"aggressive_fusion": True} if device.type == "cpu" else None
    if blocks:
        # every block shares NormAct.forward's code, so blocks of the same shape share one graph
        fast = model_blocks.with_blocks(
            model, lambda block: torch.compile(block, dynamic=False, options=options))
    else:
        fast = torch.compile(model, dynamic=False, options=options)
    # inductor's checks of the CPU's vector instruction sets, ahead, while the first call traces
    warmup = isa_warmup.start() if device.type == "cpu" else None

    pending = [on_compiled] if on_compiled else []

    def forward(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if x.shape[0] != batch_size:
            return model(x)
        out = fast(x)
        while pending:
            pending.pop()()
        return out
    forward.isa_warmup = warmup     # kept, so that the child is reaped with the forward, not before
    return forward
