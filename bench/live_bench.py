"""What the live feature view costs `cl train`: training images/s with and without it.

Each round trains one epoch on the first --images training images twice, once with the view
and once without (the order alternating), through the same TrainReporter that `cl train` uses,
drawing to a 100 x 40 terminal that writes to /dev/null (so rich and plotext do all their work);
the medians of the rounds are printed. Run from the repository root:

    PYTHONPATH=. python bench/live_bench.py --dataset fashion-mnist --model seed --images 12800 --rounds 3
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from centerloss.config.config import Config
from centerloss.data.registry import dataset_for
from centerloss.data.types import Dataset, Split
from centerloss.device.runtime import resolve_device
from centerloss.train.loop import train
from cli.render import TrainReporter


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="fashion-mnist", help="mnist, fashion-mnist or kmnist")
    p.add_argument("--data-dir", default="", help="folder with the raw idx files [as cl train]")
    p.add_argument("--model", default="seed", help="seed or lenetspp")
    p.add_argument("--images", type=int, default=12800, help="training images per epoch")
    p.add_argument("--rounds", type=int, default=3, help="epochs with and without the view, alternating")
    p.add_argument("--batch-size", type=int, default=Config.batch_size, help="images per batch")
    p.add_argument("--device", default="auto", help="auto, cuda, mps or cpu")
    p.add_argument("--precision", default="auto", help="auto, fp32 or bf16")
    return p.parse_args()


class TimedReporter(TrainReporter):
    """TrainReporter that counts the seconds training spends in its per-batch callbacks: the
    view's cost measured inside the run, less exposed to other load than two runs' speeds."""
    seconds = 0.0

    def on_features(self, *args) -> None:
        start = time.perf_counter()
        super().on_features(*args)
        self.seconds += time.perf_counter() - start

    def on_batch(self, *args) -> None:
        start = time.perf_counter()
        super().on_batch(*args)
        self.seconds += time.perf_counter() - start


def one_epoch(cfg: Config, ds: Dataset, live: bool, out: Path) -> tuple[float, float, TimedReporter]:
    """(images/s, share of the training time spent in the reporter's callbacks, the reporter)"""
    console = Console(file=open(os.devnull, "w"), force_terminal=True, width=100, height=40,
                      color_system="truecolor")
    reporter = TimedReporter(console, live=live)
    record = train(cfg, out, reporter, dataset=ds, overwrite=True)[-1]
    if not all(math.isfinite(record[k]) for k in ("train_ce", "train_center")):
        sys.exit(f"error: the epoch's training loss is not finite (ce {record['train_ce']}, center "
                 f"{record['train_center']}); no rate is printed for NaN arithmetic")
    return record["train_images_per_s"], reporter.seconds / record["train_seconds"], reporter


def main() -> None:
    args = parse_args()
    cfg = Config(model=args.model, dataset=args.dataset, data_dir=args.data_dir, epochs=1,
                 batch_size=args.batch_size, device=args.device, precision=args.precision)
    ds = dataset_for(cfg, resolve_device(cfg.device))
    n = min(args.images, len(ds.train))
    ds = dataclasses.replace(ds, train=Split(ds.train.images[:n], ds.train.labels[:n]),
                             test=Split(ds.test.images[:512], ds.test.labels[:512]))
    speeds: dict[bool, list[float]] = {False: [], True: []}
    shares: dict[bool, list[float]] = {False: [], True: []}
    draws = seconds = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for live in ((False, True) if r % 2 == 0 else (True, False)):
                speed, share, reporter = one_epoch(cfg, ds, live, Path(tmp) / "run")
                speeds[live].append(speed)
                shares[live].append(share)
                if reporter.view is not None:
                    draws += reporter.view.draws
                    seconds += reporter.view.draw_seconds
                print(f"round {r + 1}: view {'on ' if live else 'off'} {speed:,.0f} img/s, "
                      f"{100 * share:.2f}% of the time in the reporter", flush=True)
    off, on = statistics.median(speeds[False]), statistics.median(speeds[True])
    print(f"{args.model} on {n:,} {args.dataset} images, batch {args.batch_size}, torch "
          f"{torch.__version__}, {torch.get_num_threads()} threads: without the view {off:,.0f} "
          f"img/s, with it {on:,.0f} img/s ({100 * (off - on) / off:+.1f}% slower); "
          f"{draws / args.rounds:.0f} redraws an epoch, {1000 * seconds / max(draws, 1):.0f} ms each; "
          f"time in the reporter {100 * statistics.median(shares[False]):.2f}% without the view, "
          f"{100 * statistics.median(shares[True]):.2f}% with it")


if __name__ == "__main__":
    main()
