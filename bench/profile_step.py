"""Where a training step's time goes: torch.profiler over cl's own train_step, eager or compiled.

Trains from the seed along the recipe's schedule (warm-up, clipping) on the real data through cl's
Step and train_step, warms up (and compiles, with --compile), then profiles --steps steps and prints
the share of the profiled CPU time by kind of work (convolutions, BatchNorm, the elementwise
kernels of PReLU and ReLU, pooling, inductor's fused kernels, the rest) and torch.profiler's own
table. Every profiled loss is checked: a non-finite one stops it with a one-line error. Run from
the repository root:

    PYTHONPATH=. python bench/profile_step.py --data-dir DIR --precision bf16 --batch-size 128
    PYTHONPATH=. python bench/profile_step.py --data-dir DIR --precision bf16 --compile
"""
from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

from centerloss.device import cpu

cpu.prepare()   # as `cl` does, before torch loads OpenMP

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.bench import cl_batches, new_net, step_options  # the net and batches bench.py times
from centerloss.config.config import Config
from centerloss.config.recipe import Schedule
from centerloss.data import batches as batch_mod, idx as idx_mod
from centerloss.device import accel
from centerloss.device.runtime import Runtime
from centerloss.model.heads import training_loss
from centerloss.train.loop import Step, train_step

KINDS = (   # first match wins; matched against the profiler's op names
    ("convolution", ("convolution", "mkldnn_conv")),
    ("inductor's fused kernels", ("CompiledFxGraph", "Torch-Compiled")),
    ("BatchNorm", ("batch_norm",)),
    ("elementwise: PReLU, ReLU", ("prelu", "clamp_min", "threshold_backward", "aten::neg", "aten::relu",
                        "aten::mul", "aten::sub", "aten::where")),
    ("pooling", ("max_pool",)),
    ("optimizer and clipping", ("SGD", "foreach", "norm", "aten::add_", "aten::mul_")),
)


def kind_of(name: str) -> str:
    return next((kind for kind, keys in KINDS if any(k in name for k in keys)), "the rest")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="torch.profiler over cl's training step.")
    step_options(p)
    p.add_argument("--compile", action="store_true")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--rows", type=int, default=15, help="rows of torch.profiler's table")
    args = p.parse_args(argv)
    device = torch.device("cpu")
    cpu.keep_freed_blocks()          # as `cl train` does on a CPU
    ds = idx_mod.load(args.dataset, args.data_dir or None, device)
    cfg = Config(model=args.model, dataset=args.dataset, batch_size=args.batch_size)
    model, center_loss, optimizer = new_net(cfg, ds, device, channels_last=True)
    forward = accel.compiled_forward(model, cfg.batch_size, device) if args.compile else model
    step = Step(forward, center_loss, optimizer, Runtime(device, args.precision), cfg.lam,
                cfg.grad_clip, training_loss(model))
    schedule = Schedule.for_run(cfg, batch_mod.batches_per_epoch(len(ds.train), cfg.batch_size))
    data = cl_batches(ds, cfg)
    for i in range(3):      # kernel selection, and the compile
        x, y = next(data)
        train_step(step, x, y, schedule(i))
    losses = []
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for i in range(3, 3 + args.steps):
            x, y = next(data)
            _, ce, center = train_step(step, x, y, schedule(i))
            losses.append((ce + cfg.lam * center).detach().float())
    if not bool(torch.isfinite(torch.stack(losses)).all()):
        sys.exit("error: a profiled step's loss is not finite; no profile is printed")
    events = prof.key_averages()
    shares: dict[str, float] = defaultdict(float)
    for e in events:
        shares[kind_of(e.key)] += e.self_cpu_time_total
    total = sum(shares.values())
    print(f"{args.model}, {args.precision}, batch {args.batch_size}, "
          f"{'compiled' if args.compile else 'eager'}, {args.steps} steps, torch {torch.__version__}; "
          f"CPU {cpu.summary()}; {cpu.describe()}; load {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")
    print(f"  {total / args.steps / 1e3:.1f} ms of profiled CPU time a step")
    for kind, t in sorted(shares.items(), key=lambda kv: -kv[1]):
        print(f"  {kind:<28} {t / total:6.1%}")
    print(events.table(sort_by="self_cpu_time_total", row_limit=args.rows))


if __name__ == "__main__":
    main()
