"""Which knob pays off on this machine: cl's training step and infer() timed under variants.

Training variants are '+'-joined words: cl (channels_last, as cl trains), nchw (the default memory
format instead), bf16 (autocast), compile (torch.compile; the warm-up line shows its cost), t1 (one
CPU thread). Inference variants are batch sizes, optionally with +t1 and +bf16. Every variant runs
in this one process and they take turns round by round, so that other load on the machine slows
them alike; medians are printed. Training follows the recipe's schedule (warm-up, then cosine
decay) with its clipping from the seed, and every timed loss is checked: a non-finite one stops the
bench with a one-line error instead of a rate.

    PYTHONPATH=. python bench/variants.py --model seed --train cl,nchw,cl+t1 --infer 128,2048
"""
from __future__ import annotations

import argparse
import statistics
import time

from centerloss.device import cpu

cpu.prepare()   # as `cl` does, before torch loads OpenMP: passive wait, the usable cores

import torch  # noqa: E402

from centerloss.config.config import Config
from centerloss.config.recipe import Schedule
from centerloss.data.batches import batches_per_epoch
from centerloss.data.types import Split
from centerloss.device import accel, speed
from centerloss.device.runtime import Runtime, resolve_device
from centerloss.evaluation.inference import infer
from centerloss.model.center_loss import CenterLoss
from centerloss.model.heads import training_loss
from centerloss.model.nets import build_model
from centerloss.train.loop import Step, make_optimizer, train_step

WORDS = {"cl", "nchw", "bf16", "compile", "t1"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="Time cl's training step and infer() under variants.")
    p.add_argument("--device", default="cpu", help="auto, cuda, mps or cpu")
    p.add_argument("--model", default="lenetspp", help="lenetspp or seed")
    p.add_argument("--train", default="cl,nchw", help="comma-separated training variants ('' for none)")
    p.add_argument("--infer", default="", help="comma-separated inference batch sizes, each maybe "
                   "with +t1 and +bf16 ('' for none)")
    p.add_argument("--batch-size", type=int, default=Config.batch_size, help="training batch size")
    p.add_argument("--steps", type=int, default=3, help="training steps per round")
    p.add_argument("--images", type=int, default=2048, help="images per inference round")
    p.add_argument("--rounds", type=int, default=4, help="rounds per variant")
    return p.parse_args(argv)


def with_threads(threads: int, fn):
    """fn run with that many CPU threads, the setting restored after it."""
    def run():
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            return fn()
        finally:
            torch.set_num_threads(before)
    return run


def make_step(variant: str, cfg: Config, device: torch.device, x: torch.Tensor, y: torch.Tensor):
    """A callable that runs --steps training steps of this variant; all start from the same seed."""
    words = set(variant.split("+"))
    if not words <= WORDS:
        raise SystemExit(f"error: unknown variant word(s) {', '.join(sorted(words - WORDS))}; "
                         f"use {', '.join(sorted(WORDS))}")
    torch.manual_seed(cfg.seed)
    fmt = torch.contiguous_format if "nchw" in words else torch.channels_last
    model = build_model(cfg.model).to(device, memory_format=fmt)
    center_loss = CenterLoss(10, cfg.feature_dim).to(device)
    optimizer = make_optimizer(model, cfg)
    forward = accel.compiled_forward(model, cfg.batch_size, device) if "compile" in words else model
    precision = "bf16" if "bf16" in words else "fp32"
    threads = 1 if "t1" in words else torch.get_num_threads()
    step = Step(forward, center_loss, optimizer, Runtime(device, precision), cfg.lam, cfg.grad_clip,
                training_loss(model))
    # the recipe's schedule (warm-up, cosine) for a run over MNIST's 60,000 images, from step 0
    schedule = Schedule.for_run(cfg, batches_per_epoch(60000, cfg.batch_size))
    done = [0]

    def run(steps: int) -> int:
        losses = []
        for _ in range(steps):
            _, ce, center = train_step(step, x, y, schedule(done[0]))
            losses.append((ce + cfg.lam * center).detach().float())
            done[0] += 1
        if not bool(torch.isfinite(torch.stack(losses)).all()):
            raise SystemExit(f"error: {variant}: a timed step's loss is not finite (by step "
                             f"{done[0]}); no rate is printed for NaN arithmetic")
        return steps * x.shape[0]
    return lambda steps: with_threads(threads, lambda: run(steps))()




def medians(runs: dict, rounds: int, device: torch.device) -> dict[str, float]:
    rates: dict[str, list[float]] = {k: [] for k in runs}
    names = list(runs)
    for r in range(rounds):
        for name in names if r % 2 == 0 else names[::-1]:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            images = runs[name]()
            if device.type == "cuda":
                torch.cuda.synchronize()
            rates[name].append(images / (time.perf_counter() - start))
    return {k: statistics.median(v) for k, v in rates.items()}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    device = resolve_device(args.device)
    cfg = Config(model=args.model, batch_size=args.batch_size)
    g = torch.Generator().manual_seed(0)
    print(f"{args.model}, {device}, torch {torch.__version__}\n  CPU {cpu.summary()}; {cpu.describe()}"
          f"\n  load average before: {speed.load_average()}")
    variants = [v for v in args.train.split(",") if v]
    if variants:
        x = torch.randn(args.batch_size, 1, 28, 28, generator=g).to(device)
        y = torch.randint(0, 10, (args.batch_size,), generator=g).to(device)
        steps = {v: make_step(v, cfg, device, x, y) for v in variants}
        for v, run in steps.items():
            start = time.perf_counter()
            run(2)      # kernel selection, and the whole compile for 'compile'
            print(f"  warm-up {v}: {time.perf_counter() - start:.1f} s", flush=True)
        # the machine's ceiling in the same rounds (GFLOP, not images, per run), and the FLOPs per
        # trained image counted: each rate is also a share of the ceiling of its precision
        roof = {f"{name} matmul": speed.Ceiling(device, dtype).run
                for name, dtype in (("bf16", torch.bfloat16), ("fp32", torch.float32))}
        gflop = speed.counted_flops(build_model(cfg.model), (1, 28, 28), train=True) / 1e9
        rates = medians({**{v: (lambda r=r: r(args.steps)) for v, r in steps.items()}, **roof},
                        args.rounds, device)
        print(f"ceiling: bf16 {rates['bf16 matmul']:,.0f} GFLOP/s, fp32 {rates['fp32 matmul']:,.0f} "
              f"GFLOP/s; {gflop * 1e3:.1f} MFLOP per trained image (torch.utils.flop_counter)")
        for v in steps:
            ceiling = rates["bf16 matmul" if "bf16" in v.split("+") else "fp32 matmul"]
            print(f"train {v}: {rates[v]:,.0f} images/s, {rates[v] * gflop:,.0f} GFLOP/s, "
                  f"{rates[v] * gflop / ceiling:.0%} of the ceiling")
    sizes = [b for b in args.infer.split(",") if b]
    if sizes:
        model = build_model(args.model).to(device, memory_format=torch.channels_last)
        images = torch.randint(0, 256, (args.images, 28, 28), dtype=torch.uint8, generator=g)
        split = Split(images.to(device), torch.zeros(args.images, dtype=torch.long, device=device))

        def infer_run(variant: str):
            size, *rest = variant.split("+")
            if not size.isdigit() or not set(rest) <= {"t1", "bf16"}:
                raise SystemExit(f"error: inference variant {variant!r} is not N, maybe with +t1 "
                                 f"and +bf16")
            threads = 1 if "t1" in rest else torch.get_num_threads()
            precision = "bf16" if "bf16" in rest else "fp32"
            def run() -> int:
                features, logits = infer(model, split, 0.5, 0.25, Runtime(device, precision), int(size))
                if not bool(torch.isfinite(logits).all()):
                    raise SystemExit(f"error: infer {variant}: the outputs are not finite")
                return features.shape[0]
            return with_threads(threads, run)
        runs = {b: infer_run(b) for b in sizes}
        for run in runs.values():
            run()
        for b, rate in medians(runs, args.rounds, device).items():
            print(f"infer batch {b}: {rate:,.0f} images/s")
    print(f"load average after: {speed.load_average()}")


if __name__ == "__main__":
    main()
