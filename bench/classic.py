"""The classic script: what `cl train` does, written the usual way, for bench/whole.py to time.

torchvision's dataset class, per-image transforms on PIL images (RandomCrop as the same random
translation, ToTensor, Normalize), a DataLoader, the model in fp32 and the default memory format,
a test pass each epoch. The model, the center loss, the optimizer, the learning-rate schedule and
the gradient clipping are cl's own, so the two commands differ only in their pipeline. It prints
one JSON line per epoch (mean training loss, test accuracy, seconds) and fails with a one-line
error when a training loss is not finite. Run from the repository root, with the data set's idx
files in DIR/<Class>/raw (torchvision's layout):

    PYTHONPATH=. python bench/classic.py --dataset fashion-mnist --data-dir DIR --epochs 1 --batch-size 256
"""
from __future__ import annotations

import argparse
import json
import sys
import time

START = time.perf_counter()

import torch
import torchvision.datasets as tvd
from torch.utils.data import DataLoader
from torchvision import transforms

from centerloss.config.config import Config
from centerloss.config.recipe import Schedule
from centerloss.data import idx
from centerloss.model.center_loss import CenterLoss
from centerloss.model.heads import softmax_loss
from centerloss.model.nets import build_model
from centerloss.train.optimizer import make_optimizer


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="Train as cl train does, through a DataLoader.")
    p.add_argument("--dataset", default="mnist", choices=sorted(idx.DATASETS))
    p.add_argument("--data-dir", required=True, help="folder with <Class>/raw/ idx files")
    p.add_argument("--model", default="lenetspp")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    cfg = Config(model=args.model, dataset=args.dataset, epochs=args.epochs,
                 batch_size=args.batch_size, seed=args.seed)
    spec = idx.DATASETS[args.dataset]     # the normalisation cl uses
    mean, std, cls = spec.mean, spec.std, getattr(tvd, spec.tv_class)
    augment = transforms.Compose([transforms.RandomCrop(28, padding=cfg.augment), transforms.ToTensor(),
                                  transforms.Normalize((mean,), (std,))])
    plain = transforms.Compose([transforms.ToTensor(), transforms.Normalize((mean,), (std,))])
    train_set = cls(args.data_dir, train=True, transform=augment, download=False)
    test_set = cls(args.data_dir, train=False, transform=plain, download=False)
    torch.manual_seed(cfg.seed)
    # drop_last as cl does with a last batch too small for BatchNorm: here, any partial batch
    train_loader = DataLoader(train_set, batch_size=cfg.batch_size, shuffle=True,
                              num_workers=args.workers, drop_last=True)
    test_loader = DataLoader(test_set, batch_size=1000, num_workers=args.workers)

    model = build_model(cfg.model, len(train_set.classes))
    center_loss = CenterLoss(len(train_set.classes), cfg.feature_dim, cfg.alpha)
    optimizer = make_optimizer(model, cfg)
    schedule = Schedule.for_run(cfg, len(train_loader))
    params = list(model.parameters())
    step = 0
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        start, total, batches = time.perf_counter(), 0.0, 0
        for x, y in train_loader:
            for group in optimizer.param_groups:
                group["lr"] = schedule(step)
            features, logits = model(x)
            loss = softmax_loss(logits, y) + cfg.lam * center_loss(features, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            optimizer.step()
            total += loss.item()
            batches += 1
            step += 1
            if not torch.isfinite(loss):
                sys.exit(f"error: the training loss of step {step} is not finite")
        seconds = time.perf_counter() - start
        model.eval()
        correct = 0
        with torch.no_grad():
            for x, y in test_loader:
                correct += (model(x)[1].argmax(1) == y).sum().item()
        print(json.dumps({"epoch": epoch, "train_loss": total / batches,
                          "test_accuracy": correct / len(test_set), "train_seconds": seconds,
                          "seconds_since_start": time.perf_counter() - START}), flush=True)


if __name__ == "__main__":
    main()
