"""Train a grid of configurations and print one row per cell: does the recipe hold everywhere?

Each --vary NAME=V1,V2,... varies one Config field around the base (--set NAME=V, else cl's
defaults), one factor at a time; --product crosses them all instead. A cell trains a fresh run with
cl's own train() in a temporary folder and prints the epochs it trained (--epochs, else cl's
rule), its final softmax and nearest-center test accuracy, compactness, the guard's returns,
whether it diverged and the seconds it took.
--subset N trains on a seeded random N-image subset of the training split and evaluates on the
whole test split. Run from the repository root, for example:

    PYTHONPATH=. python bench/sweep.py --data-dir DIR --subset 4000 --epochs 2 --set model=seed \\
        --vary batch_size=32,128,1024,4096 --vary lam=0,0.01,0.1,1,10 --vary precision=fp32,bf16
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import itertools
import sys
import tempfile
import time
from pathlib import Path

import torch

from centerloss.config.config import Config
from centerloss.config.recipe import peak_lr
from centerloss.data.registry import dataset_for
from centerloss.data.types import Dataset, Split
from centerloss.device import cpu
from centerloss.device.runtime import resolve_device
from centerloss.errors import DivergenceError, TrainError
from centerloss.train.loop import train

FIELDS = {f.name: f for f in dataclasses.fields(Config)}
RULED = {"lr": float, "epochs": int}     # Config fields whose None means "cl's rule decides"


def parse_value(name: str, text: str):
    """A command-line value as the Config field's type."""
    default = getattr(Config(), name)
    if name in RULED:                 # "auto": cl's rule picks the value
        return None if text in ("auto", "none") else RULED[name](text)
    if isinstance(default, bool):
        return text.lower() in ("1", "true", "yes")
    return type(default)(text)


def parse_setting(text: str, many: bool) -> tuple[str, list]:
    name, sep, values = text.partition("=")
    name = name.replace("-", "_")
    if not sep or name not in FIELDS:
        raise SystemExit(f"error: {text!r} is not NAME=VALUE with NAME one of: {', '.join(FIELDS)}")
    parts = values.split(",") if many else [values]
    try:
        return name, [parse_value(name, v) for v in parts]
    except ValueError as e:
        raise SystemExit(f"error: {text}: {e}")


def cells(base: dict, vary: list[tuple[str, list]], product: bool) -> list[dict]:
    """The settings of every cell; the base itself first when varying one factor at a time."""
    if product:
        names = [n for n, _ in vary]
        return [{**base, **dict(zip(names, combo))} for combo in itertools.product(*(v for _, v in vary))]
    grid = [dict(base)]
    for name, values in vary:
        grid += [{**base, name: v} for v in values if v != base.get(name, getattr(Config(), name))]
    return grid


def subset(ds: Dataset, n: int, seed: int) -> Dataset:
    """The first n of a seeded permutation of the training split; the test split stays whole."""
    if not 0 < n < len(ds.train):
        return ds
    keep = torch.randperm(len(ds.train), generator=torch.Generator().manual_seed(seed))[:n]
    keep = keep.sort().values.to(ds.train.labels.device)
    train_split = Split(ds.train.images.index_select(0, keep), ds.train.labels.index_select(0, keep))
    return dataclasses.replace(ds, train=train_split)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Train a grid of configurations; one row per cell.")
    p.add_argument("--data-dir", default="", help="folder with the data set's files")
    p.add_argument("--subset", type=int, default=0, help="train on N random training images (0: all)")
    p.add_argument("--epochs", type=int, default=None, help="epochs of every cell [default: cl's]")
    p.add_argument("--set", action="append", default=[], metavar="NAME=V", help="a base setting")
    p.add_argument("--vary", action="append", default=[], metavar="NAME=V1,V2", help="values to try")
    p.add_argument("--product", action="store_true", help="every combination, not one factor at a time")
    p.add_argument("--keep", default="", help="keep the runs in this folder instead of a temporary one")
    args = p.parse_args(argv)
    base = {"epochs": args.epochs, "data_dir": args.data_dir}
    for text in args.set:
        name, (value,) = parse_setting(text, many=False)
        base[name] = value
    vary = [parse_setting(text, many=True) for text in args.vary]
    grid = cells(base, vary, args.product)
    for cell in grid:
        try:
            Config(**cell).validate()
        except (TypeError, ValueError) as e:
            raise SystemExit(f"error: cell {cell}: {e}")
    print(f"sweep: {len(grid)} cells, {args.epochs or 'the default'} epochs each, "
          f"{'subset of ' + str(args.subset) if args.subset else 'whole'} training split; "
          f"{cpu.summary()}, {torch.get_num_threads()} threads; torch {torch.__version__}", flush=True)
    labels = [", ".join(f"{n}={v}" for n, v in cell.items() if n not in ("epochs", "data_dir"))
              or "base" for cell in grid]
    width = max(40, *map(len, labels))     # the columns stay aligned under long --product labels
    header = (f"{'cell':<{width}} {'lr':>7} {'epochs':>6} {'acc':>7} {'center':>7} {'compact':>8} "
              f"{'guard':>5} {'status':<9} {'seconds':>8}")
    print(header)
    datasets: dict[tuple, Dataset] = {}
    with contextlib.ExitStack() as stack:   # the throwaway runs go when the sweep ends, however it ends
        root = Path(args.keep) if args.keep else Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="cl-sweep-")))
        for k, cell in enumerate(grid):
            cfg = Config(**cell)
            label = labels[k]
            key = (cfg.dataset, cfg.data_dir, cfg.device, cfg.seed)
            if key not in datasets:
                datasets[key] = subset(dataset_for(cfg, resolve_device(cfg.device)), args.subset, cfg.seed)
            start = time.perf_counter()
            try:
                history = train(cfg, root / f"cell{k:03d}", dataset=datasets[key])
                last = history[-1]
                guard = sum(len(r.get("guard", [])) for r in history)
                row = (f"{len(history):>6} {100 * last['test_accuracy']:6.2f}% "
                       f"{100 * last['nearest_center_accuracy']:6.2f}% "
                       f"{last['compactness']:8.3f} {guard:>5} {'ok':<9}")
            except TrainError as e:
                status = "diverged" if isinstance(e, DivergenceError) or "non-finite" in str(e) else "error"
                row = f"{'-':>6} {'-':>7} {'-':>7} {'-':>8} {'-':>5} {status:<9}"
                print(f"  {label}: {e}", file=sys.stderr)
            print(f"{label:<{width}} {peak_lr(cfg):7.4f} {row} {time.perf_counter() - start:8.1f}", flush=True)


if __name__ == "__main__":
    main()
