"""Seconds of compiling: the first compiled training step of cl, each in a fresh process with an
empty inductor cache folder, with and without inductor's vector-ISA checks run ahead in a child
(centerloss/device/isa_warmup.py), taking turns; then once more from the cache the last run
filled (what a second run on the machine pays).

Each process trains along the recipe's schedule from the seed on the real data through cl's own
compiled_forward and train_step: the first step (the compile) and two more; every loss is
checked, and a run whose loss is not finite stops the bench with a one-line error and no time.
inductor's precompiled header lives outside the cache folder (/tmp/torchinductor_$USER) and is
not emptied: a machine's very first compile takes ~6 s more than any figure printed here. Run
from the repository root:

    PYTHONPATH=. python bench/compile_time.py --data-dir DIR --rounds 3 [--blocks]

--blocks times the compile of the BatchNorm + activation blocks alone (compile: blocks).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
# the net, batches and options bench.py times; importing it prepares the CPU as `cl` does
# (cpu.prepare) before torch loads OpenMP
from bench.bench import cl_batches, new_net, step_options
from centerloss.config.config import Config
from centerloss.config.recipe import Schedule
from centerloss.data import batches as batch_mod, idx as idx_mod
from centerloss.device import accel, cpu, isa_warmup, speed
from centerloss.device.runtime import Runtime
from centerloss.model.heads import training_loss
from centerloss.train.loop import Step, train_step


def one(args: argparse.Namespace) -> None:
    """In a fresh process: build, compile on the first step, print one JSON line."""
    import torch  # loaded by bench.bench already, after it prepared the CPU

    if args.no_child:
        isa_warmup.start = lambda: None
    device = torch.device("cpu")
    cpu.keep_freed_blocks()
    ds = idx_mod.load(args.dataset, args.data_dir or None, device)
    cfg = Config(model=args.model, dataset=args.dataset, batch_size=args.batch_size)
    schedule = Schedule.for_run(cfg, batch_mod.batches_per_epoch(len(ds.train), cfg.batch_size))
    batches = cl_batches(ds, cfg)
    start = time.perf_counter()     # the set-up a compiled run adds counts: the optimizer's too
    model, center_loss, optimizer = new_net(cfg, ds, device, channels_last=True)
    forward = accel.compiled_forward(model, cfg.batch_size, device, blocks=args.blocks)
    step = Step(forward, center_loss, optimizer,
                Runtime(device, args.precision), cfg.lam, cfg.grad_clip, training_loss(model))
    losses, seconds = [], []
    for i in range(3):
        x, y = next(batches)
        _, ce, center = train_step(step, x, y, schedule(i))
        losses.append(float((ce + cfg.lam * center).detach()))
        seconds.append(time.perf_counter() - start)
        start = time.perf_counter()
    print(json.dumps({"first_step_s": seconds[0], "next_steps_s": seconds[1:], "losses": losses}))


def timed(args: argparse.Namespace, cache: str, child: bool) -> float:
    command = [sys.executable, __file__, "--one", "--data-dir", args.data_dir, "--dataset",
               args.dataset, "--model", args.model, "--batch-size", str(args.batch_size),
               "--precision", args.precision, *([] if child else ["--no-child"]),
               *(["--blocks"] if args.blocks else [])]
    proc = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, check=False,
                          env={**os.environ, "PYTHONPATH": str(ROOT),
                               "TORCHINDUCTOR_CACHE_DIR": cache})
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        sys.exit(f"error: a compile run failed (exit {proc.returncode}): {tail}")
    record = json.loads(lines[-1])
    if not all(math.isfinite(loss) for loss in record["losses"]):
        sys.exit(f"error: a compile run's loss is not finite ({record['losses']}); no time is printed")
    return record["first_step_s"]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Seconds of cl's first compiled step, cold and warm.")
    step_options(p)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--blocks", action="store_true",
                   help="compile only the BatchNorm + activation blocks (compile: blocks)")
    p.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--no-child", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one:
        return one(args)
    print(f"{args.model}{', in blocks' if args.blocks else ''}, {args.precision}, batch "
          f"{args.batch_size}; CPU {cpu.summary()}\n"
          f"  load average before: {speed.load_average()}", flush=True)
    results: dict[str, list[float]] = {"with the child": [], "without": []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            order = list(results) if r % 2 == 0 else list(results)[::-1]
            for name in order:
                cache = tempfile.mkdtemp(dir=tmp)
                seconds = timed(args, cache, name == "with the child")
                results[name].append(seconds)
                print(f"  round {r + 1}: {name}, an empty cache: first step {seconds:.1f} s",
                      flush=True)
        warm = timed(args, cache, True)
    for name, values in results.items():
        print(f"first compiled step, an empty inductor cache, {name}: median "
              f"{statistics.median(values):.1f} s ({', '.join(f'{v:.1f}' for v in values)})")
    print(f"first compiled step from the cache the last run filled: {warm:.1f} s")
    print(f"load average after: {speed.load_average()}")


if __name__ == "__main__":
    main()
