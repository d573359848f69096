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

Both train as `cl train` does: from the seed, along the recipe's schedule (warm-up, then cosine
decay) with its gradient clipping, through cl's own Step and train_step (the classic pipeline its
plain loop, with the same schedule and clipping). Every loss a timed round computed is checked; a
non-finite one stops the bench with a one-line error and no rate is printed.

The machine's ceiling (a 2048 x 2048 matrix product in fp32 and in bf16) is timed in the same
rounds, and the model's FLOPs per image are counted (torch.utils.flop_counter), so each rate is
also printed as GFLOP/s and as a share of that ceiling: a figure that other load on the machine
moves far less than images/s. The pipelines and the ceiling take turns round by round and the
median of each is printed, so that other load slows them alike. Run from the repository root:

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
import torchvision.datasets as tvd  # noqa: E402
from torch.utils.data import DataLoader, Subset  # noqa: E402
from torchvision import transforms  # noqa: E402

from centerloss import errors as errors_mod
from centerloss.config.config import Config
from centerloss.config.recipe import Schedule
from centerloss.data import batches as batch_mod, idx as idx_mod
from centerloss.data.types import Dataset, Split, default_data_dir
from centerloss.device import accel, speed
from centerloss.device.runtime import Runtime
from centerloss.evaluation.inference import infer
from centerloss.model.center_loss import CenterLoss
from centerloss.model.heads import training_loss
from centerloss.model.nets import build_model
from centerloss.train.loop import Step, TrainError, make_optimizer, train_step

ROOT = Path(__file__).resolve().parent.parent


def step_options(p: argparse.ArgumentParser) -> None:
    """The options of the scripts that time cl's training step alone (compile_time.py,
    profile_step.py): the data, the net, its batch and its precision."""
    p.add_argument("--data-dir", default="")
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--model", default="lenetspp")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--precision", default="bf16", choices=("fp32", "bf16"))


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
    p.add_argument("--lr", type=float, default=None,
                   help="peak learning rate of the schedule [default: the recipe's rule]")
    p.add_argument("--grad-clip", type=float, default=Config.grad_clip,
                   help="largest gradient norm of a step, as cl train's (0: none)")
    p.add_argument("--precision", default="auto", help="cl's precision: auto, fp32 or bf16")
    p.add_argument("--compile", action="store_true", help="torch.compile cl's model")
    p.add_argument("--compile-blocks", action="store_true",
                   help="torch.compile only its BatchNorm + activation blocks (compile: blocks)")
    p.add_argument("--no-compile", action="store_true",
                   help="--to-accuracy's cl train eager, whatever its compile rule would choose")
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
    """The device, and always the CPU with the flags that pick its kernels (the host feeds a GPU):
    the model name as lscpu reports it, and which of amx_tile, amx_bf16 and avx512_bf16 (native
    bf16) it has."""
    _, flags = cpu.model_and_flags()
    bf16 = [f for f in ("amx_tile", "amx_bf16", "avx512_bf16") if f in flags]
    host = (f"CPU {cpu.summary()}; bf16 flags: {' '.join(bf16) or 'none'}; {cpu.describe()}")
    return f"{torch.cuda.get_device_name(device)}; {host}" if device.type == "cuda" else host




class NotFinite(Exception):
    """A timed step's loss was not finite: its rate would time NaN arithmetic."""


def check_finite(losses: list[torch.Tensor], what: str) -> None:
    """Raise NotFinite unless every loss a timed round computed is finite (one read, after the
    round, so that the check does not make each step wait for the device)."""
    if losses and not bool(torch.isfinite(torch.stack(losses)).all()):
        first = int((~torch.isfinite(torch.stack(losses))).nonzero()[0, 0])
        raise NotFinite(f"{what}: the loss of timed step {first + 1} of the round is not finite; "
                        f"no rate is printed for NaN arithmetic")


def threaded(threads: int, fn: Callable[[], float]) -> Callable[[], float]:
    """fn run with that many CPU threads (0: as it is), the setting restored after it."""
    def run() -> float:
        before = torch.get_num_threads()
        torch.set_num_threads(threads or before)
        try:
            return fn()
        finally:
            torch.set_num_threads(before)
    return run




def interleaved(runs: dict[str, Callable[[], float]], rounds: int, device: torch.device) -> dict[str, float]:
    """Median rate (what each run returns, per second) of each run; every round runs each once,
    in alternating order."""
    rates: dict[str, list[float]] = {name: [] for name in runs}
    names = list(runs)
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            speed.sync(device)
            start = time.perf_counter()
            work = runs[name]()
            speed.sync(device)
            rates[name].append(work / (time.perf_counter() - start))
    return {name: statistics.median(v) for name, v in rates.items()}


def ceilings(device: torch.device) -> dict[str, Callable[[], float]]:
    """The machine's ceiling runs (GFLOP done per call), to time in the rounds beside the pipelines."""
    return {f"{name} matmul": speed.Ceiling(device, dtype).run
            for name, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32))}


def share(rate: float, gflop_per_image: float, ceiling: float) -> str:
    achieved = rate * gflop_per_image
    return f"{achieved:,.0f} GFLOP/s, {achieved / ceiling:.0%} of the ceiling"


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
    """Training images/s of both pipelines and the ceiling's GFLOP/s, in the same rounds; returns
    the rates and the two trained nets. Both follow the recipe's schedule from step 0 (warm-up,
    then cosine decay over --epochs or cl's default epochs) with its gradient clipping."""
    batches = batch_mod.batches_per_epoch(len(ds.train), cfg.batch_size)
    schedule = Schedule.for_run(cfg, batches)
    cl_model, cl_center, cl_opt = new_net(cfg, ds, device, channels_last=True)
    forward = (accel.compiled_forward(cl_model, cfg.batch_size, device, blocks=cfg.compile == "blocks")
               if cfg.compile else cl_model)
    cl_data = cl_batches(ds, cfg)
    step = Step(forward, cl_center, cl_opt, Runtime(device, precision), cfg.lam, cfg.grad_clip,
                training_loss(cl_model))
    steps = {"cl": 0, "classic": 0}

    def cl_run(n: int) -> int:
        images, losses = 0, []
        with accel.cudnn_mode(autotune=False):
            for x, y in itertools.islice(cl_data, n):
                _, ce, center = train_step(step, x, y, schedule(steps["cl"]))
                losses.append((ce + cfg.lam * center).detach().float())
                steps["cl"] += 1
                images += y.shape[0]
        check_finite(losses, "cl")
        return images

    tv_model, tv_center, tv_opt = new_net(cfg, ds, device, channels_last=False)
    tv_data = forever(loader(classic_dataset(ds, root, True, cfg.augment), cfg.batch_size, True,
                             workers, device))
    tv_params, tv_loss = list(tv_model.parameters()), training_loss(tv_model)

    def classic_run(n: int) -> int:
        images, losses = 0, []
        for x, y in itertools.islice(tv_data, n):
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            for group in tv_opt.param_groups:
                group["lr"] = schedule(steps["classic"])
            features, logits = tv_model(x)
            loss = tv_loss(logits, y) + cfg.lam * tv_center(features, y)
            tv_opt.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(tv_params, cfg.grad_clip)
            tv_opt.step()
            losses.append(loss.detach())
            steps["classic"] += 1
            images += y.shape[0]
        check_finite(losses, "classic")
        return images

    cl_model.train()
    tv_model.train()
    for name, run in (("cl", threaded(args.cl_threads, lambda: cl_run(2))),
                      ("classic", lambda: classic_run(2))):
        speed.sync(device)
        start = time.perf_counter()
        run()        # first batches build kernels (and compile): not part of the rate
        speed.sync(device)
        print(f"  warm-up {name}: {time.perf_counter() - start:.1f} s for 2 batches", flush=True)
    rates = interleaved({"cl": threaded(args.cl_threads, lambda: cl_run(args.batches)),
                         "classic": lambda: classic_run(args.batches),
                         **ceilings(device)}, args.rounds, device)
    print(f"  trained {steps['cl']} steps of the schedule (peak learning rate {schedule.lr:g} from "
          f"step {schedule.warmup}), every timed loss finite", flush=True)
    return rates, {"cl": cl_model, "classic": tv_model}


def bench_inference(args, ds, root, device, precision, workers, nets) -> dict[str, dict[str, float]]:
    """Evaluation and embedding images/s: cl's infer() against a DataLoader loop, each round
    beside the ceiling; every output checked finite."""
    n_test = args.eval_images or len(ds.test)
    n_train = args.eval_images or len(ds.train)
    test = Split(ds.test.images[:n_test], ds.test.labels[:n_test])
    train_part = Split(ds.train.images[:n_train], ds.train.labels[:n_train])
    tv_test = loader(Subset(classic_dataset(ds, root, False, 0), range(n_test)), args.batch_size,
                     False, workers, device)
    tv_train = loader(Subset(classic_dataset(ds, root, True, 0), range(n_train)), args.batch_size,
                      False, workers, device)
    cl_model, tv_model = nets["cl"].eval(), nets["classic"].eval()

    def finite(t: torch.Tensor, what: str) -> None:
        if not bool(torch.isfinite(t).all()):
            raise NotFinite(f"{what}: the model's outputs are not finite; no rate is printed")

    def cl_eval() -> int:
        _, logits = infer(cl_model, test, ds.mean, ds.std, Runtime(device, precision))
        finite(logits, "cl evaluation")
        (logits.argmax(1) == test.labels).float().mean().item()
        return n_test

    def classic_eval() -> int:
        correct = 0
        with torch.no_grad():
            for x, y in tv_test:
                _, logits = tv_model(x.to(device, non_blocking=True))
                finite(logits, "classic evaluation")
                correct += (logits.argmax(1) == y.to(device)).sum().item()
        return n_test

    def cl_embed() -> int:
        features, _ = infer(cl_model, train_part, ds.mean, ds.std, Runtime(device, precision))
        finite(features.cpu(), "cl embedding")
        return n_train

    def classic_embed() -> int:
        feats = []
        with torch.no_grad():
            for x, _ in tv_train:
                feats.append(tv_model(x.to(device, non_blocking=True))[0].cpu())
        finite(torch.cat(feats), "classic embedding")
        return n_train

    cl_eval, cl_embed = threaded(args.cl_threads, cl_eval), threaded(args.cl_threads, cl_embed)
    for run in (cl_eval, classic_eval, cl_embed, classic_embed):
        run()    # warm-up: kernel selection, worker start
    roof = ceilings(device)
    return {"evaluation": interleaved({"cl": cl_eval, "classic": classic_eval, **roof}, args.rounds, device),
            "embedding": interleaved({"cl": cl_embed, "classic": classic_embed, **roof}, args.rounds, device)}


def bench_to_accuracy(args, cfg: Config, root: str) -> None:
    """Wall seconds of the whole `cl train` command, started as a user starts it (its own process:
    imports, data load, per-epoch evaluation and snapshots included), until an epoch's test
    accuracy first reaches the target; the run is stopped there."""
    command = [sys.executable, "-m", "cli", "train", "--json", "--model", cfg.model, "--dataset",
               cfg.dataset, "--data-dir", root, "--batch-size", str(cfg.batch_size), "--precision",
               cfg.precision, "--device", cfg.device, "--seed", str(cfg.seed)]
    if cfg.compile is True:
        command.append("--compile")
    elif args.no_compile:
        command.append("--no-compile")
    if cfg.lr is not None:
        command += ["--lr", str(cfg.lr)]
    command += ["--grad-clip", str(cfg.grad_clip)]
    if cfg.epochs is not None:     # None: cl train's own rule picks them
        command += ["--epochs", str(cfg.epochs)]
    if args.cl_threads:
        command = ["env", f"OMP_NUM_THREADS={args.cl_threads}"] + command
    with tempfile.TemporaryDirectory() as out:
        if cfg.compile == "blocks":        # a config key: cl train has no flag for it
            settings = Path(out) / "blocks.yaml"
            settings.write_text("compile: blocks\n")
            command += ["--config", str(settings)]
        start = time.perf_counter()
        proc = subprocess.Popen(command + ["--out", str(Path(out) / "run")], stdout=subprocess.PIPE, text=True,
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
    except (errors_mod.DataError, TrainError, accel.CompileError, ValueError, NotFinite) as e:
        sys.exit(f"error: {e}")


def run(args: argparse.Namespace) -> None:
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    runtime = Runtime.resolve(args.device, args.precision)
    device, precision = runtime.device, runtime.precision
    workers = args.workers if args.workers >= 0 else (4 if device.type == "cuda" else 0)
    cfg = Config(model=args.model, dataset=args.dataset, data_dir=args.data_dir, device=args.device,
                 precision=args.precision,
                 compile="blocks" if args.compile_blocks else args.compile, batch_size=args.batch_size,
                 seed=args.seed, epochs=args.epochs, lr=args.lr,
                 grad_clip=args.grad_clip)
    cfg.validate()
    idx_mod.find_files(args.dataset, args.data_dir or None)    # downloads if need be
    root = args.data_dir or str(default_data_dir())
    ds = idx_mod.load(args.dataset, root, device)
    threads = torch.get_num_threads()
    # as `cl train` does on a CPU; process-wide, so the classic pipeline here gets it too
    kept = device.type == "cpu" and cpu.keep_freed_blocks()
    print(f"{args.model} on {args.dataset}, batch {args.batch_size}, {device}, torch {torch.__version__}"
          f"\n  {machine(device)}{'; freed blocks kept (both pipelines)' if kept else ''}"
          f"\n  cl: {precision}, channels_last, compile {cfg.compile}, "
          f"{args.cl_threads or threads} threads; classic: fp32, {workers} DataLoader workers, "
          f"{threads} threads\n  load average before: {speed.load_average()}")
    if args.batches > 0:
        probe = build_model(cfg.model, len(ds.classes), cfg.feature_dim, 1, ds.train.images.shape[-1])
        shape = tuple(ds.input_shape)
        train_gflop = speed.counted_flops(probe, shape, train=True) / 1e9
        eval_gflop = speed.counted_flops(probe, shape, train=False) / 1e9
        print(f"  {args.model}: {train_gflop * 1e3:,.1f} MFLOP per trained image, "
              f"{eval_gflop * 1e3:,.1f} per evaluated image (torch.utils.flop_counter)")
        print("training")
        rates, nets = bench_training(args, cfg, ds, root, device, precision, workers)
        roof = rates["bf16 matmul"] if precision == "bf16" else rates["fp32 matmul"]
        print(f"ceiling: {CEILING} matrix product bf16 {rates['bf16 matmul']:,.0f} GFLOP/s, fp32 "
              f"{rates['fp32 matmul']:,.0f} GFLOP/s", flush=True)
        print(f"training images/s: cl {rates['cl']:,.0f}  classic {rates['classic']:,.0f}  "
              f"ratio {rates['cl'] / rates['classic']:.2f}x", flush=True)
        print(f"  cl: {share(rates['cl'], train_gflop, roof)} ({precision}); classic: "
              f"{share(rates['classic'], train_gflop, rates['fp32 matmul'])} (fp32)", flush=True)
        for task, r in bench_inference(args, ds, root, device, precision, workers, nets).items():
            roof = r["bf16 matmul"] if precision == "bf16" else r["fp32 matmul"]
            print(f"{task} images/s: cl {r['cl']:,.0f}  classic {r['classic']:,.0f}  "
                  f"ratio {r['cl'] / r['classic']:.2f}x  (cl: infer(), batches of "
                  f"{threaded(args.cl_threads, lambda: accel.inference_batch_size(device))()}; "
                  f"classic: batches of {args.batch_size})", flush=True)
            print(f"  cl: {share(r['cl'], eval_gflop, roof)} ({precision}); classic: "
                  f"{share(r['classic'], eval_gflop, r['fp32 matmul'])} (fp32); ceiling bf16 "
                  f"{r['bf16 matmul']:,.0f}, fp32 {r['fp32 matmul']:,.0f} GFLOP/s", flush=True)
    if args.to_accuracy:
        print(f"time to {args.to_accuracy:.2%} test accuracy, cl's default recipe")
        bench_to_accuracy(args, cfg, root)
    print(f"load average after: {speed.load_average()}")


CEILING = f"{speed.CEILING_SIDE} x {speed.CEILING_SIDE}"

if __name__ == "__main__":
    main()
