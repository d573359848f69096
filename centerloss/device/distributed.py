"""DistributedDataParallel under torchrun: `torchrun --nproc-per-node N -m cli train ...`.

Every rank holds the whole data set and draws the same permutation; each trains on every N-th
image of each batch (batches.batch_slices), so --batch-size stays the global batch and one step on
N ranks is one single-process step on the same images. DDP averages the gradients, CenterLoss
all-reduces its per-class sums and counts so the centers move identically everywhere, and only
rank 0 evaluates, prints and writes files.

BatchNorm layers see the statistics of their rank's shard: torch's SyncBatchNorm runs only on GPUs,
and per-GPU statistics are the usual choice for shards of 32 images or more."""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.distributed as dist

from centerloss.errors import DistributedError


@dataclass(frozen=True)
class Context:
    """Where this process stands: rank 0 of 1 when torchrun did not start it."""
    rank: int = 0
    world: int = 1
    group: dist.ProcessGroup | None = None   # None: single process, no collectives
    device: torch.device | None = None       # the device torchrun's LOCAL_RANK assigns
    owns_group: bool = False                 # whether leave() should destroy the group

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched() -> Context:
    """This process's rank and the world size as torchrun's environment gives them (rank 0 of 1
    when torchrun did not start it), before any group is joined: the one place they are read."""
    return Context(int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")))


def join(device: str = "auto") -> Context:
    """Join the process group that torchrun's environment describes (WORLD_SIZE > 1), on NCCL
    with one GPU per rank when CUDA is there and asked for, else on gloo with CPUs; a
    single-process Context otherwise. A group already initialised by the caller is reused."""
    if launched().world <= 1:
        return Context()
    if device == "mps":
        raise DistributedError("torchrun with --device mps: PyTorch has no MPS backend for "
                               "collectives; use --device cpu")
    if device in ("auto", "cuda") and torch.cuda.is_available():
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if local_rank >= torch.cuda.device_count():
            raise DistributedError(f"local rank {local_rank} has no GPU of its own "
                                   f"({torch.cuda.device_count()} visible); lower --nproc-per-node")
        dev, backend = torch.device("cuda", local_rank), "nccl"
        torch.cuda.set_device(dev)
    elif device == "cuda":
        raise DistributedError("--device cuda: no CUDA GPU is visible to torch; use --device cpu")
    else:
        dev, backend = torch.device("cpu"), "gloo"
    owns = not dist.is_initialized()
    if owns:
        dist.init_process_group(backend)
    return Context(dist.get_rank(), dist.get_world_size(), dist.group.WORLD, dev, owns)


def leave(ctx: Context) -> None:
    if ctx.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def wrap(model: torch.nn.Module, ctx: Context) -> torch.nn.Module:
    """The model under DDP when distributed, else the model itself."""
    if ctx.group is None:
        return model
    ids = [ctx.device.index] if ctx.device is not None and ctx.device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids, process_group=ctx.group)


def average_(tensor: torch.Tensor, ctx: Context) -> torch.Tensor:
    """The mean of tensor over the ranks, in place (a no-op in a single process)."""
    if ctx.group is not None:
        dist.all_reduce(tensor, group=ctx.group)
        tensor /= ctx.world
    return tensor


def any_(flag: torch.Tensor, ctx: Context) -> torch.Tensor:
    """Whether flag (a bool or 0/1 tensor) is set on any rank, in place (a no-op in one process)."""
    if ctx.group is not None:
        dist.all_reduce(flag, op=dist.ReduceOp.MAX, group=ctx.group)
    return flag


def spread(tensor: torch.Tensor, ctx: Context) -> float:
    """The largest difference between any two ranks' copies of tensor: 0.0 when they are
    identical, as the centers must be. Two small collectives: meant for once an epoch."""
    hi, lo = tensor.detach().clone(), tensor.detach().clone()
    dist.all_reduce(hi, op=dist.ReduceOp.MAX, group=ctx.group)
    dist.all_reduce(lo, op=dist.ReduceOp.MIN, group=ctx.group)
    return float((hi - lo).max())


@contextlib.contextmanager
def main_first(ctx: Context) -> Iterator[None]:
    """Rank 0 runs the block first (it may download or unpack data), the others after it."""
    if ctx.group is not None and not ctx.is_main:
        dist.barrier(group=ctx.group)
    yield
    if ctx.group is not None and ctx.is_main:
        dist.barrier(group=ctx.group)
