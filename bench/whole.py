"""The whole command against the classic script: wall seconds of `cl train` and of bench/classic.py
(the same model, loss, optimizer, schedule and clipping through torchvision's DataLoader), each
started in its own process as a user starts it, taking turns round by round.

Both read the same idx files, copied once into a temporary folder in torchvision's layout (the
classic script's dataset class reads only that). Each run's losses are checked: a run whose
training loss is not finite, or that fails, stops the bench with a one-line error and no time is
printed for it. Between runs the bench times the machine's ceiling (a 2048 x 2048 matrix product
in bf16 and fp32) and prints the load averages, so that a contended figure says so. Run from the
repository root:

    PYTHONPATH=. python bench/whole.py --dataset fashion-mnist --data-dir /usr/share/datasets/fashion-mnist --epochs 1 --batch-size 256
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from centerloss.device import cpu

cpu.prepare()   # as `cl` does, before torch loads OpenMP

import torch

from centerloss.data import idx
from centerloss.device import speed

ROOT = Path(__file__).resolve().parent.parent


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Wall seconds of `cl train` against the classic script.")
    p.add_argument("--dataset", default="fashion-mnist", choices=sorted(idx.DATASETS))
    p.add_argument("--data-dir", default="", help="folder with the idx files [cl's default]")
    p.add_argument("--model", default="lenetspp")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--rounds", type=int, default=2, help="runs of each command, alternating")
    p.add_argument("--cl-args", default="", help="more flags for cl train, e.g. '--compile'")
    p.add_argument("--skip-classic", action="store_true", help="time cl train alone")
    return p.parse_args(argv)




def torchvision_layout(name: str, data_dir: str, dest: Path) -> None:
    """The data set's four idx files, uncompressed, in dest/<Class>/raw."""
    import gzip
    raw = dest / idx.DATASETS[name].tv_class / "raw"
    raw.mkdir(parents=True)
    for source in idx.find_files(name, data_dir or None, download=False).values():
        target = raw / source.name.removesuffix(".gz")
        if source.suffix == ".gz":
            with gzip.open(source) as f, open(target, "wb") as out:
                shutil.copyfileobj(f, out)
        else:
            shutil.copyfile(source, target)


def timed(command: list[str], what: str) -> tuple[float, dict]:
    """Wall seconds of the command and its last JSON line; SystemExit with one line when it fails
    or its training loss is not finite."""
    start = time.perf_counter()
    proc = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=False,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    seconds = time.perf_counter() - start
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        sys.exit(f"error: {what} failed (exit {proc.returncode}): {tail}")
    record = json.loads(lines[-1])
    loss = record.get("train_ce", record.get("train_loss"))
    if loss is None or not math.isfinite(loss):
        sys.exit(f"error: {what}: the training loss is not finite ({loss}); no time is printed")
    return seconds, record


def compile_line(run: Path) -> str:
    """The `compile:` line of the run's config.yaml: true or false, and the rule's reason."""
    lines = (run / "config.yaml").read_text(encoding="utf-8").splitlines()
    return next((line for line in lines if line.startswith("compile:")), "compile: (not found)")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    roof = {name: speed.Ceiling(torch.device("cpu"), dtype)
            for name, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32))}
    _, flags = cpu.model_and_flags()
    print(f"{args.model} on {args.dataset}, {args.epochs} epoch(s), batch {args.batch_size}, torch "
          f"{torch.__version__}\n  CPU {cpu.summary()}; bf16 flags: "
          f"{' '.join(f for f in ('amx_tile', 'amx_bf16', 'avx512_bf16') if f in flags) or 'none'}; "
          f"{cpu.describe()}\n  load average before: {speed.load_average()}", flush=True)
    common = ["--dataset", args.dataset, "--model", args.model, "--epochs", str(args.epochs),
              "--batch-size", str(args.batch_size)]
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        torchvision_layout(args.dataset, args.data_dir, data)
        commands = {"cl": [sys.executable, "-m", "cli", "train", *common, "--data-dir", str(data),
                           "--json", "--out", str(Path(tmp) / "run"), "--overwrite",
                           *args.cl_args.split()],
                    "classic": [sys.executable, str(ROOT / "bench" / "classic.py"), *common,
                                "--data-dir", str(data)]}
        if args.skip_classic:
            del commands["classic"]
        seconds: dict[str, list[float]] = {name: [] for name in commands}
        for r in range(args.rounds):
            names = list(commands) if r % 2 == 0 else list(commands)[::-1]
            for name in names:
                s, record = timed(commands[name], name)
                seconds[name].append(s)
                print(f"  round {r + 1}: {name} {s:.1f} s, test accuracy "
                      f"{record['test_accuracy']:.2%}; load {speed.load_average()}", flush=True)
                if name == "cl":    # compiled or not, and why: the run's config.yaml says
                    print(f"    cl's {compile_line(Path(tmp) / 'run')}", flush=True)
            rates = {}
            for k, c in roof.items():
                t0 = time.perf_counter()
                gflop = c.run()
                rates[k] = gflop / (time.perf_counter() - t0)
            print(f"  ceiling after round {r + 1}: bf16 {rates['bf16']:,.0f} GFLOP/s, fp32 "
                  f"{rates['fp32']:,.0f} GFLOP/s", flush=True)
    median = {name: statistics.median(v) for name, v in seconds.items()}
    line = "  ".join(f"{name} {s:.1f} s" for name, s in median.items())
    if "classic" in median:
        line += f"  ratio {median['classic'] / median['cl']:.2f}x"
    print(f"whole command, median wall seconds: {line}")
    print(f"load average after: {speed.load_average()}")


if __name__ == "__main__":
    main()
