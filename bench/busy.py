"""`cl train` on a quiet machine and beside CPU-bound processes, side by side in one run.

Each run is the whole command in its own process (`python -m cli train`, so cl's start-up choice of
threads and OpenMP wait policy applies), for --epochs epochs on the first --train-images images of
the data set; the figure is the last epoch's training images/s from the run's history.jsonl (the
first epoch also builds the kernels), and the whole command's wall seconds. The conditions take
turns within each round, so that slow drift of other load hits both alike. Settings:

    cl       what cl chooses (cpu.prepare(): spin 3,000 turns then sleep, the usable cores)
    spin     libgomp's default wait, spinning 300,000 turns before sleeping
    short    3,000 turns of spin then sleep, set by hand (what cl chooses)
    passive  sleep at once (OMP_WAIT_POLICY=PASSIVE): cl's choice in 0.1.0
    t1       one thread (OMP_NUM_THREADS=1), cl's wait

Run from the repository root; the machine should be otherwise quiet (the load average is printed):

    PYTHONPATH=. python bench/busy.py --data-dir /work/data --model lenetspp
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from centerloss import errors as errors_mod
from centerloss.data import idx as idx_mod
from centerloss.device import cpu

ROOT = Path(__file__).resolve().parent.parent
SETTINGS = {"cl": {}, "spin": {"GOMP_SPINCOUNT": "300000"}, "short": {"GOMP_SPINCOUNT": "3000"},
            "passive": {"OMP_WAIT_POLICY": "PASSIVE"}, "t1": {"OMP_NUM_THREADS": "1"}}
OMP = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS")
BUSY_LOOP = "while True: pass"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="cl train's images/s quiet and beside busy processes.")
    p.add_argument("--model", default="lenetspp", help="lenetspp or seed")
    p.add_argument("--dataset", default="mnist", help="mnist, fashion-mnist or kmnist")
    p.add_argument("--data-dir", default="", help="folder with the raw idx files [~/.cache/cl/data]")
    p.add_argument("--train-images", type=int, default=5000, help="training images per epoch")
    p.add_argument("--test-images", type=int, default=2000, help="test images evaluated per epoch")
    p.add_argument("--epochs", type=int, default=2, help="epochs per run; the last one is timed")
    p.add_argument("--batch-size", type=int, default=128, help="training batch size")
    p.add_argument("--precision", default="auto", help="auto, fp32 or bf16")
    p.add_argument("--settings", default="cl,spin", help=f"comma-separated: {', '.join(SETTINGS)}")
    p.add_argument("--busy", type=int, default=1, help="CPU-bound processes beside the busy runs")
    p.add_argument("--rounds", type=int, default=1, help="quiet/busy pairs per setting")
    return p.parse_args(argv)


def write_subset(args: argparse.Namespace, folder: Path) -> Path:
    """The first images of each split as plain idx files in torchvision's layout under folder."""
    ds = idx_mod.load(args.dataset, args.data_dir or None, torch.device("cpu"))
    raw = folder / idx_mod.DATASETS[args.dataset].tv_class / "raw"
    raw.mkdir(parents=True)
    for split, n, (images_name, labels_name) in ((ds.train, args.train_images, idx_mod.IDX_FILES["train"]),
                                                 (ds.test, args.test_images, idx_mod.IDX_FILES["test"])):
        images = split.images[:n].numpy().astype(np.uint8)
        labels = split.labels[:n].numpy().astype(np.uint8)
        header = np.array([0x803, *images.shape], dtype=">u4").tobytes()
        (raw / images_name).write_bytes(header + images.tobytes())
        (raw / labels_name).write_bytes(np.array([0x801, len(labels)], dtype=">u4").tobytes()
                                        + labels.tobytes())
    return folder


def train_once(args: argparse.Namespace, data: Path, out: Path, setting: str) -> dict:
    """One `cl train` run under a setting: its start line, last epoch's images/s, wall seconds."""
    env = {k: v for k, v in os.environ.items() if k not in OMP}
    env.update(SETTINGS[setting], PYTHONPATH=str(ROOT))
    command = [sys.executable, "-m", "cli", "train", "--model", args.model, "--dataset", args.dataset,
               "--data-dir", str(data), "--epochs", str(args.epochs), "--batch-size",
               str(args.batch_size), "--precision", args.precision, "--device", "cpu",
               "--out", str(out)]
    start = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
    wall = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"error: cl train failed under {setting}: {result.stderr.strip()[-500:]}")
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    if not all(math.isfinite(r["train_ce"]) and math.isfinite(r["train_center"]) for r in history):
        sys.exit(f"error: cl train under {setting}: a training loss is not finite; no rate is "
                 f"printed for NaN arithmetic")
    start_line = result.stdout.splitlines()[0]
    return {"rate": history[-1]["train_images_per_s"], "wall": wall,
            # precision, threads and wait policy, without the compile choice
            "chosen": re.sub(r", (eager|compiled) \([^)]*\)", "", start_line.rsplit(", cpu ", 1)[-1])}


def measure(args: argparse.Namespace, data: Path, work: Path) -> dict[tuple[str, str], list[dict]]:
    results: dict[tuple[str, str], list[dict]] = {}
    settings = [s for s in args.settings.split(",") if s]
    unknown = set(settings) - set(SETTINGS)
    if unknown:
        sys.exit(f"error: unknown setting(s) {', '.join(sorted(unknown))}; use {', '.join(SETTINGS)}")
    runs = 0
    for r in range(args.rounds):
        for setting in settings:
            for condition in ("quiet", "busy") if r % 2 == 0 else ("busy", "quiet"):
                hogs = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP])
                        for _ in range(args.busy if condition == "busy" else 0)]
                try:
                    runs += 1
                    run = train_once(args, data, work / f"run{runs}", setting)
                finally:
                    for hog in hogs:
                        hog.kill()
                        hog.wait()
                print(f"  {setting:5} {condition:5} {run['rate']:8,.0f} images/s  "
                      f"{run['wall']:6.1f} s wall  ({run['chosen']})", flush=True)
                results.setdefault((setting, condition), []).append(run)
    return results


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    print(f"cl train, {args.model} on the first {args.train_images:,} {args.dataset} images, "
          f"{args.epochs} epochs, batch {args.batch_size}, precision {args.precision}, "
          f"torch {torch.__version__}\nCPU: {cpu.summary()}\n"
          f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}; busy runs have "
          f"{args.busy} CPU-bound process{'es' if args.busy != 1 else ''} beside them", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            data = write_subset(args, Path(tmp) / "data")
        except errors_mod.DataError as e:
            sys.exit(f"error: {e}")
        results = measure(args, data, Path(tmp))
    print(f"{'setting':8} {'quiet img/s':>12} {'busy img/s':>11} {'busy/quiet':>10} "
          f"{'quiet wall':>10} {'busy wall':>10}")
    for setting in dict.fromkeys(s for s, _ in results):
        quiet = statistics.median(r["rate"] for r in results[setting, "quiet"])
        busy = statistics.median(r["rate"] for r in results[setting, "busy"])
        walls = [statistics.median(r["wall"] for r in results[setting, c]) for c in ("quiet", "busy")]
        print(f"{setting:8} {quiet:12,.0f} {busy:11,.0f} {busy / quiet:9.2f}x "
              f"{walls[0]:9.1f}s {walls[1]:9.1f}s")


if __name__ == "__main__":
    main()
