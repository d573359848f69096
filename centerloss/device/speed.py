"""Speed as a share of the machine: the ceiling of a large matrix product in fp32 and bf16, and the
FLOPs a model spends per image, counted by torch.utils.flop_counter rather than written by hand.

A rate in images/s says little on a machine shared with other work, or on another CPU; the same
rate as a share of what this machine's matrix units deliver in the same minute says how much of the
hardware cl uses. The benchmarks in bench/ print both."""
from __future__ import annotations

import copy
import time

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

CEILING_SIDE = 2048      # a square matrix product this large runs near the peak of the matrix units


def sync(device: torch.device) -> None:
    """Wait for queued device work, so that a timer read after it covers that work."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    elif device.type == "mps":
        torch.mps.synchronize()


def load_average() -> str:
    """The machine's load averages (1, 5, 15 minutes), printed beside figures taken under them."""
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "unknown"


class Ceiling:
    """GFLOP/s of an n x n matrix product in one dtype on one device; `run()` does about
    `seconds` of products and returns the GFLOP done, so the caller can time it beside other work."""

    def __init__(self, device: torch.device, dtype: torch.dtype, n: int = CEILING_SIDE,
                 seconds: float = 0.3):
        gen = torch.Generator().manual_seed(0)
        self.a = torch.randn(n, n, generator=gen).to(device, dtype)
        self.b = torch.randn(n, n, generator=gen).to(device, dtype)
        self.out = torch.empty(n, n, device=device, dtype=dtype)
        self.device, self.gflop = device, 2 * n ** 3 / 1e9
        self.reps = 1
        for _ in range(2):     # the first products pick kernels and fault pages in: not timed
            start = time.perf_counter()
            self.run()
            self.reps = max(1, round(self.reps * seconds / max(time.perf_counter() - start, 1e-6)))

    def run(self) -> float:
        for _ in range(self.reps):
            torch.mm(self.a, self.b, out=self.out)
        sync(self.device)
        if not torch.isfinite(self.out[0, 0]):      # random normals: a product is always finite
            raise RuntimeError("the ceiling's matrix product is not finite")
        return self.reps * self.gflop


def counted_flops(model: nn.Module, input_shape: tuple[int, ...], train: bool,
                  loss=None) -> float:
    """FLOPs per image of one forward pass (train=False, in eval mode) or of a training step's
    forward and backward pass (train=True), counted by FlopCounterMode on a copy of the model (the
    model itself, its BatchNorm statistics included, is untouched). `loss(features, logits)` is
    what the backward starts from; by default the sum of the logits. Counted on the meta device:
    the model's own FLOPs, not those of a CPU's way of computing them (nets.Conv2d's padding of
    one input channel to two)."""
    probe = copy.deepcopy(model).float().to("meta").train(train)
    batch = 4
    x = torch.randn(batch, *input_shape, device="meta")
    counter = FlopCounterMode(display=False)
    with counter, torch.set_grad_enabled(train):
        features, logits = probe(x)
        if train:
            (loss(features, logits) if loss else logits.sum()).backward()
    return counter.get_total_flops() / batch
