"""cl's pipeline against the classic torchvision Dataset + ToTensor + DataLoader one, side by side.

On the same data, model, center loss, optimizer and batch size it measures images/s of
  - training: cl's train_step on batches from batches.train_batches (uint8 images resident on the
    device, augmentation and normalisation per batch there, channels_last, bf16 autocast where
    native, optional torch.compile) against a DataLoader of PIL images through RandomCrop (the same
    random translation), ToTensor and Normalize feeding the same net in fp32;
  - evaluation (test accuracy) and embedding (train-split features copied to the host): cl's
    infer() against a no_grad DataLoader loop;
and, with --to-accuracy, the wall seconds of the whole `cl train` command with its default recipe
(its own process, as a user runs it) until its test accuracy first reaches the target.

The two pipelines take turns round by round and the median of each is printed, so that other load
on the machine slows both alike. Run from the repository root:

    PYTHONPATH=. python bench/bench.py --dataset fashion-mnist --model seed --batches 20
    PYTHONPATH=. python bench/bench.py --dataset fashion-mnist --model seed --to-accuracy 0.85
    PYTHONPATH=. python bench/bench.py --data-dir /work/data --batches 0 --to-accuracy 0.99
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator

from centerloss.device import cpu

cpu.prepare()   # as `cl` does, before torch loads OpenMP: passive wait, the usable cores

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import torchvision.datasets as tvd  # noqa: E402
from torch.utils.data import DataLoader, Subset  # noqa: E402
from torchvision import transforms  # noqa: E402

from centerloss import errors as errors_mod
from centerloss.config.config import Config
from centerloss.config.recipe import peak_lr
from centerloss.data import batches as batch_mod, idx as idx_mod
from centerloss.data.types import Dataset, Split, default_data_dir
from centerloss.device import accel
from centerloss.device.runtime import Runtime
from centerloss.evaluation.inference import infer
from centerloss.model.center_loss import CenterLoss
from centerloss.model.nets import build_model
from centerloss.train.loop import Step, TrainError, make_optimizer, train_step

ROOT = Path(__file__).resolve().parent.parent


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Images/s of cl's pipeline against torchvision's "
                                "DataLoader pipeline, and seconds to a test accuracy.")
    p.add_argument("--device", default="auto", help="auto, cuda, mps or cpu")
    p.add_argument("--model", default="lenetspp", help="lenetspp or seed")
    p.add_argument("--dataset", default="mnist", help="mnist, fashion-mnist or kmnist")
    p.add_argument("--data-dir", default="", help="folder with the raw idx files [~/.cache/cl/data]")
    p.add_argument("--batches", type=int, default=10, help="timed training batches per round "
                   "(0: skip the pipelines, for --to-accuracy alone)")
    p.add_argument("--rounds", type=int, default=3, help="alternating timed rounds per pipeline")
    p.add_argument("--batch-size", type=int, default=Config.batch_size, help="training batch size")
    p.add_argument("--precision", default="auto", help="cl's precision: auto, fp32 or bf16")
    p.add_argument("--compile", action="store_true", help="torch.compile cl's model")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for both [torch's default]")
    p.add_argument("--cl-threads", type=int, default=0,
                   help="CPU threads for cl's pipeline alone [as --threads], to time a thread setting")
    p.add_argument("--workers", type=int, default=-1,
                   help="DataLoader workers of the classic pipeline [0 on a CPU, 4 on a GPU]")
    p.add_argument("--eval-images", type=int, default=2048,
                   help="images per evaluation and embedding round (0: the whole split)")
    p.add_argument("--to-accuracy", type=float, default=0.0,
                   help="also time cl's default recipe until this test accuracy (takes minutes)")
    p.add_argument("--epochs", type=int, default=None,
                   help="epoch limit of --to-accuracy [default: cl train's]")
    p.add_argument("--seed", type=int, default=0, help="seed of weights and batch order")
    return p.parse_args(argv)


def machine(device: torch.device) -> str:
    """The device, and always the CPU with the flags that pick its kernels (the host feeds a GPU)."""
    host = f"CPU {cpu.summary()}; {cpu.describe()}"
    return f"{torch.cuda.get_device_name(device)}; {host}" if device.type == "cuda" else host


def threaded(threads: int, fn: Callable[[], int]) -> Callable[[], int]:
    """fn run with that many CPU threads (0: as it is), the setting restored after it."""
    def run() -> int:
        before = torch.get_num_threads()
        torch.set_num_threads(threads or before)
        try:
            return fn()
        finally:
            torch.set_num_threads(before)
    return run


def sync(device: torch.device) -> None:
    """Wait for queued device work, so that a timer read after it covers that work."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    elif device.type == "mps":
        torch.mps.synchronize()


def interleaved(runs: dict[str, Callable[[], int]], rounds: int, device: torch.device) -> dict[str, float]:
    """Median images/s of each run; every round runs each once, in alternating order."""
    rates: dict[str, list[float]] = {name: [] for name in runs}
    names = list(runs)
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            sync(device)
            start = time.perf_counter()
            images = runs[name]()
            sync(device)
            rates[name].append(images / (time.perf_counter() - start))
    return {name: statistics.median(v) for name, v in rates.items()}


def classic_dataset(ds: Dataset, root: str, train_split: bool, augment: int) -> tvd.VisionDataset:
    """torchvision's dataset class over the same idx files, with the usual per-image transforms."""
    side = ds.train.images.shape[-1]
    steps = [transforms.RandomCrop(side, padding=augment)] if augment else []
    steps += [transforms.ToTensor(), transforms.Normalize((ds.mean,), (ds.std,))]
    cls = getattr(tvd, idx_mod.DATASETS[ds.name].tv_class)
    return cls(root, train=train_split, transform=transforms.Compose(steps), download=False)


def loader(dataset, batch_size: int, shuffle: bool, workers: int, device: torch.device) -> DataLoader:
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=workers,
                      pin_memory=device.type == "cuda", persistent_workers=workers > 0)


def new_net(cfg: Config, ds: Dataset, device: torch.device, channels_last: bool):
    """Model, center loss and optimizer built as cl's train() builds them, from the same seed."""
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model, len(ds.classes), cfg.feature_dim, 1, ds.train.images.shape[-1])
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(device, memory_format=fmt)
    return model, CenterLoss(len(ds.classes), cfg.feature_dim, cfg.alpha).to(device), make_optimizer(model, cfg)


def cl_batches(ds: Dataset, cfg: Config) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    for epoch in itertools.count(1):
        yield from batch_mod.train_batches(ds.train, cfg.batch_size, cfg.seed, epoch, cfg.augment,
                                          ds.mean, ds.std)


def forever(dl: DataLoader) -> Iterator:
    while True:
        yield from dl


def bench_training(args, cfg, ds, root, device, precision, workers) -> tuple[dict, dict]:
    """Training images/s of both pipelines; returns the rates and the two trained nets."""
    cl_model, cl_center, cl_opt = new_net(cfg, ds, device, channels_last=True)
    forward = accel.compiled_forward(cl_model, cfg.batch_size, device) if cfg.compile else cl_model
    cl_data = cl_batches(ds, cfg)
    step = Step(forward, cl_center, cl_opt, Runtime(device, precision), cfg.lam)

    def cl_run(n: int) -> int:
        images = 0
        with accel.cudnn_mode(autotune=False):
            for x, y in itertools.islice(cl_data, n):
                train_step(step, x, y, peak_lr(cfg))
                images += y.shape[0]
        return images

    tv_model, tv_center, tv_opt = new_net(cfg, ds, device, channels_last=False)
    tv_data = forever(loader(classic_dataset(ds, root, True, cfg.augment), cfg.batch_size, True,
                             workers, device))

    def classic_run(n: int) -> int:
        images = 0
        for x, y in itertools.islice(tv_data, n):
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            features, logits = tv_model(x)
            loss = F.cross_entropy(logits, y) + cfg.lam * tv_center(features, y)
            tv_opt.zero_grad(set_to_none=True)
            loss.backward()
            tv_opt.step()
            images += y.shape[0]
        return images

    cl_model.train()
    tv_model.train()
    for name, run in (("cl", threaded(args.cl_threads, lambda: cl_run(2))),
                      ("classic", lambda: classic_run(2))):
        sync(device)
        start = time.perf_counter()
        run()        # first batches build kernels (and compile): not part of the rate
        sync(device)
        print(f"  warm-up {name}: {time.perf_counter() - start:.1f} s for 2 batches", flush=True)
    rates = interleaved({"cl": threaded(args.cl_threads, lambda: cl_run(args.batches)),
                         "classic": lambda: classic_run(args.batches)}, args.rounds, device)
    return rates, {"cl": cl_model, "classic": tv_model}


def bench_inference(args, ds, root, device, precision, workers, nets) -> dict[str, dict[str, float]]:
    """Evaluation and embedding images/s: cl's infer() against a DataLoader loop."""
    n_test = args.eval_images or len(ds.test)
    n_train = args.eval_images or len(ds.train)
    test = Split(ds.test.images[:n_test], ds.test.labels[:n_test])
    train_part = Split(ds.train.images[:n_train], ds.train.labels[:n_train])
    tv_test = loader(Subset(classic_dataset(ds, root, False, 0), range(n_test)), args.batch_size,
                     False, workers, device)
    tv_train = loader(Subset(classic_dataset(ds, root, True, 0), range(n_train)), args.batch_size,
                      False, workers, device)
    cl_model, tv_model = nets["cl"].eval(), nets["classic"].eval()

    def cl_eval() -> int:
        _, logits = infer(cl_model, test, ds.mean, ds.std, Runtime(device, precision))
        (logits.argmax(1) == test.labels).float().mean().item()
        return n_test

    def classic_eval() -> int:
        correct = 0
        with torch.no_grad():
            for x, y in tv_test:
                _, logits = tv_model(x.to(device, non_blocking=True))
                correct += (logits.argmax(1) == y.to(device)).sum().item()
        return n_test

    def cl_embed() -> int:
        features, _ = infer(cl_model, train_part, ds.mean, ds.std, Runtime(device, precision))
        features.cpu()
        return n_train

    def classic_embed() -> int:
        feats = []
        with torch.no_grad():
            for x, _ in tv_train:
                feats.append(tv_model(x.to(device, non_blocking=True))[0].cpu())
        torch.cat(feats)
        return n_train

    cl_eval, cl_embed = threaded(args.cl_threads, cl_eval), threaded(args.cl_threads, cl_embed)
    for run in (cl_eval, classic_eval, cl_embed, classic_embed):
        run()    # warm-up: kernel selection, worker start
    return {"evaluation": interleaved({"cl": cl_eval, "classic": classic_eval}, args.rounds, device),
            "embedding": interleaved({"cl": cl_embed, "classic": classic_embed}, args.rounds, device)}


def bench_to_accuracy(args, cfg: Config, root: str) -> None:
    """Wall seconds of the whole `cl train` command, started as a user starts it (its own process:
    imports, data load, per-epoch evaluation and snapshots included), until an epoch's test
    accuracy first reaches the target; the run is stopped there."""
    command = [sys.executable, "-m", "cli", "train", "--json", "--model", cfg.model, "--dataset",
               cfg.dataset, "--data-dir", root, "--batch-size", str(cfg.batch_size), "--precision",
               cfg.precision, "--device", cfg.device, "--seed", str(cfg.seed)]
    if cfg.compile:
        command.append("--compile")
    if cfg.epochs is not None:     # None: cl train's own rule picks them
        command += ["--epochs", str(cfg.epochs)]
    if args.cl_threads:
        command = ["env", f"OMP_NUM_THREADS={args.cl_threads}"] + command
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        proc = subprocess.Popen(command + ["--out", out], stdout=subprocess.PIPE, text=True,
                                env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=ROOT)
        try:
            train_seconds = 0.0
            for line in proc.stdout:
                record = json.loads(line)
                wall = time.perf_counter() - start
                train_seconds += record["train_seconds"]
                print(f"  epoch {record['epoch']}: test accuracy {record['test_accuracy']:.4f}, "
                      f"{train_seconds:.1f} s of training, {wall:.1f} s since the command started",
                      flush=True)
                if record["test_accuracy"] >= args.to_accuracy:
                    print(f"reached {args.to_accuracy:.2%} test accuracy in epoch {record['epoch']}, "
                          f"{wall:.1f} s after `cl train` started ({train_seconds:.1f} s of it "
                          f"training)")
                    return
        finally:
            proc.kill()
            proc.wait()
    if proc.returncode not in (0, -9):
        sys.exit(f"error: cl train failed (exit {proc.returncode}); run it alone to see why")
    print(f"did not reach {args.to_accuracy:.2%} in {cfg.epochs or 'the default'} epochs")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        run(args)
    except (errors_mod.DataError, TrainError, accel.CompileError, ValueError) as e:
        sys.exit(f"error: {e}")


def run(args: argparse.Namespace) -> None:
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    runtime = Runtime.resolve(args.device, args.precision)
    device, precision = runtime.device, runtime.precision
    workers = args.workers if args.workers >= 0 else (4 if device.type == "cuda" else 0)
    cfg = Config(model=args.model, dataset=args.dataset, data_dir=args.data_dir, device=args.device,
                 precision=args.precision, compile=args.compile, batch_size=args.batch_size,
                 seed=args.seed, epochs=args.epochs)
    cfg.validate()
    idx_mod.find_files(args.dataset, args.data_dir or None)    # downloads if need be
    root = args.data_dir or str(default_data_dir())
    ds = idx_mod.load(args.dataset, root, device)
    threads = torch.get_num_threads()
    print(f"{args.model} on {args.dataset}, batch {args.batch_size}, {device}, torch {torch.__version__}"
          f"\n  {machine(device)}\n  cl: {precision}, channels_last, compile {args.compile}, "
          f"{args.cl_threads or threads} threads; classic: fp32, {workers} DataLoader workers, "
          f"{threads} threads")
    if args.batches > 0:
        print("training")
        rates, nets = bench_training(args, cfg, ds, root, device, precision, workers)
        print(f"training images/s: cl {rates['cl']:,.0f}  classic {rates['classic']:,.0f}  "
              f"ratio {rates['cl'] / rates['classic']:.2f}x", flush=True)
        for task, r in bench_inference(args, ds, root, device, precision, workers, nets).items():
            print(f"{task} images/s: cl {r['cl']:,.0f}  classic {r['classic']:,.0f}  "
                  f"ratio {r['cl'] / r['classic']:.2f}x  (cl: infer(), batches of "
                  f"{threaded(args.cl_threads, lambda: accel.inference_batch_size(device))()}; "
                  f"classic: batches of {args.batch_size})", flush=True)
    if args.to_accuracy:
        print(f"time to {args.to_accuracy:.2%} test accuracy, cl's default recipe")
        bench_to_accuracy(args, cfg, root)


if __name__ == "__main__":
    main()
