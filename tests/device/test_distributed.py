"""DDP on two CPU processes (gloo): the all-reduced center update, and `torchrun -m cli train`
matching a single process on the same batches."""
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file
from support.data import make_dataset

from centerloss.config.config import Config
from centerloss.model.center_loss import CenterLoss
from centerloss.store import checkpoint as ckpt_io
from centerloss.train.loop import train

REPO = Path(__file__).resolve().parents[2]
CLASSES, DIM, STEPS, BATCH = 5, 3, 3, 11


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def batches():
    """STEPS batches of BATCH features and labels, and the starting centers: the same in every process."""
    g = torch.Generator().manual_seed(0)
    feats = [torch.randn(BATCH, DIM, generator=g) for _ in range(STEPS)]
    labels = [torch.randint(0, CLASSES, (BATCH,), generator=g) for _ in range(STEPS)]
    return feats, labels, torch.randn(CLASSES, DIM, generator=g)


def center_worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    feats, labels, start = batches()
    loss = CenterLoss(CLASSES, DIM, alpha=0.5, process_group=dist.group.WORLD)
    loss.centers.copy_(start)
    for x, y in zip(feats, labels):
        loss(x[rank::world], y[rank::world])       # this rank's shard of the batch
    save_file({"centers": loss.centers}, f"{out}/rank{rank}.safetensors")
    dist.destroy_process_group()


def test_centers_stay_identical_across_ranks_and_equal_one_process(tmp_path):
    # fork, not spawn: the children need not import torch again (the parent never touched CUDA)
    ctx = mp.start_processes(center_worker, args=(2, free_port(), str(tmp_path)), nprocs=2,
                             join=False, start_method="fork")
    deadline = time.monotonic() + 120
    while not ctx.join(timeout=5):
        if time.monotonic() > deadline:
            for p in ctx.processes:
                p.kill()
            pytest.fail("the two gloo ranks did not finish within 120 s")
    rank0 = load_file(tmp_path / "rank0.safetensors")["centers"]
    rank1 = load_file(tmp_path / "rank1.safetensors")["centers"]
    assert torch.equal(rank0, rank1)
    feats, labels, start = batches()
    single = CenterLoss(CLASSES, DIM, alpha=0.5)
    single.centers.copy_(start)
    for x, y in zip(feats, labels):
        single(x, y)
    torch.testing.assert_close(rank0, single.centers, rtol=1e-6, atol=1e-6)
    assert not torch.allclose(rank0, start)                 # the centers did move


def test_torchrun_two_ranks_train_like_one_process(tmp_path):
    data = make_dataset(tmp_path / "data", n_train=69, n_test=20)   # batches of 32, 32, 5 (3 + 2)
    flags = ["--model", "seed", "--feature-dim", "3", "--epochs", "1", "--batch-size", "32",
             "--lr", "0.05", "--device", "cpu", "--precision", "fp32", "--augment", "1",
             "--data-dir", str(data)]
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
         "-m", "cli", "train", *flags, "--out", str(tmp_path / "ddp")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert sum(line.startswith("epoch 1/1") for line in lines) == 1        # rank 0 alone prints
    assert sum(line.startswith("saved ") for line in lines) == 1
    assert "torchrun: 2 processes under DDP, each training on 1/2 of every batch of 32" in lines
    history = ckpt_io.read_history(tmp_path / "ddp")
    assert len(history) == 1 and history[0]["center_spread"] == 0.0

    cfg = Config(model="seed", feature_dim=3, epochs=1, batch_size=32, lr=0.05, device="cpu",
                 precision="fp32", augment=1, data_dir=str(data))
    train(cfg, tmp_path / "single")
    ddp = ckpt_io.load_checkpoint(tmp_path / "ddp" / "model.safetensors")
    one = ckpt_io.load_checkpoint(tmp_path / "single" / "model.safetensors")
    assert ddp.model_state.keys() == one.model_state.keys()
    for name, value in one.model_state.items():
        torch.testing.assert_close(ddp.model_state[name], value, rtol=1e-4, atol=1e-5, msg=name)
    torch.testing.assert_close(ddp.centers, one.centers, rtol=1e-4, atol=1e-5)
    assert ddp.metrics["test_accuracy"] == pytest.approx(one.metrics["test_accuracy"])


@pytest.mark.parametrize("code, expected", [(0, 0), (None, 0), (3, 3), ("error: no", 1)])
def test_a_torchrun_rank_exits_with_its_code_and_flushed_output(code, expected):
    # A rank ends through exit_now (no interpreter finalization, where gloo's threads could abort
    # it): what it printed must still arrive, and the exit code must be the command's.
    script = ("import sys; from cli.main import exit_now; sys.stdout.write('last line'); "
              f"exit_now({code!r})")
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=60)
    assert proc.returncode == expected
    assert proc.stdout == "last line"
    assert proc.stderr.strip() == (code if isinstance(code, str) else "")
