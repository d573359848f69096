"""The training loop: softmax cross-entropy + lambda * center loss, centers moved by Eq. 4.

It reports through callbacks and knows no terminal; cli/ renders. Losses are summed on the
device and read only when a callback asks, so the loop itself never waits for the device."""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from . import accel
from . import checkpoint as ckpt_io
from . import data as data_mod
from .config import Config
from .loss import CenterLoss
from .metrics import compactness, nearest_center_accuracy
from .models import build_model


class TrainError(Exception):
    """Training cannot start or go on; the message says why and what to do."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise TrainError("--device cuda: no CUDA GPU is visible to torch; use --device auto or cpu")
    if name == "mps" and not torch.backends.mps.is_available():
        raise TrainError("--device mps: Apple's MPS is not available here; use --device auto or cpu")
    if name not in ("cuda", "mps", "cpu"):
        raise TrainError(f"unknown device {name!r}; choose one of: auto, cuda, mps, cpu")
    return torch.device(name)


def native_bf16(device: torch.device) -> bool:
    """Whether the device computes bf16 natively, so that autocast speeds it up."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
    return False


def resolve_precision(name: str, device: torch.device) -> str:
    if name == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    if name == "bf16" and device.type == "mps":
        raise TrainError("--precision bf16 is not supported on MPS; use fp32")
    return name


def autocast(device: torch.device, precision: str):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


@torch.inference_mode()
def infer(model: torch.nn.Module, split: data_mod.Split, mean: float, std: float,
          device: torch.device, precision: str, batch_size: int | None = None
          ) -> tuple[torch.Tensor, torch.Tensor]:
    """(features, logits) of a whole split in fp32, on the device, in batches of batch_size
    (default: the size that suits the device, accel.inference_batch_size)."""
    batch_size = batch_size or accel.inference_batch_size(device)
    model.eval()
    feats, logits = [], []
    with autocast(device, precision), accel.cudnn_mode(autotune=True):
        for x, _ in data_mod.eval_batches(split, batch_size, mean, std):
            f, z = model(x.contiguous(memory_format=torch.channels_last))
            feats.append(f.float())
            logits.append(z.float())
    return torch.cat(feats), torch.cat(logits)


class LossWindow:
    """Sums of the cross-entropy and center loss of recent batches, kept on the device."""

    def __init__(self, device: torch.device):
        self.sums = torch.zeros(2, device=device)
        self.batches = 0

    def add(self, ce: torch.Tensor, center: torch.Tensor) -> None:
        self.sums += torch.stack([ce.detach().float(), center.detach().float()])
        self.batches += 1

    def read(self) -> tuple[float, float]:
        """Mean (cross-entropy, center loss) since the last read. This waits for the device."""
        if self.batches == 0:
            return float("nan"), float("nan")
        ce, center = (self.sums / self.batches).tolist()
        self.sums.zero_()
        self.batches = 0
        return ce, center


class Callbacks:
    """Override what you need; the loop calls these and nothing else to report."""

    def on_start(self, cfg: Config, device: torch.device, precision: str, dataset: data_mod.Dataset,
                 start_epoch: int) -> None: ...

    def on_epoch_start(self, epoch: int, batches: int) -> None: ...

    def on_batch(self, epoch: int, batch: int, batches: int, images: int, window: LossWindow) -> None: ...

    def on_epoch_end(self, record: dict) -> None: ...


@dataclass
class Schedule:
    """Linear warm-up, then cosine decay to zero: the learning rate is a function of the step alone,
    so a resumed run needs no scheduler state to continue exactly."""
    lr: float
    warmup: int
    total: int

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return self.lr * (step + 1) / self.warmup
        progress = (step - self.warmup) / max(1, self.total - self.warmup)
        return self.lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def make_optimizer(model: torch.nn.Module, cfg: Config) -> torch.optim.Optimizer:
    """SGD with Nesterov momentum; weight decay on conv and linear weights only (not on biases,
    BatchNorm or PReLU slopes, which decay would push towards ReLU)."""
    decay = [p for p in model.parameters() if p.ndim >= 2]
    rest = [p for p in model.parameters() if p.ndim < 2]
    fused = accel.fused_optimizer(next(model.parameters()).device)
    return torch.optim.SGD([{"params": decay, "weight_decay": cfg.weight_decay},
                            {"params": rest, "weight_decay": 0.0}],
                           lr=cfg.lr, momentum=cfg.momentum, nesterov=True, fused=fused)


def check_out_dir(out: Path, overwrite: bool) -> None:
    if (out / "model.safetensors").exists() or (out / "history.jsonl").exists():
        if not overwrite:
            raise TrainError(f"{out} already holds a run; pass --overwrite to replace it "
                             f"or --out to train elsewhere")


def train(cfg: Config, out: Path | str = "params", callbacks: Callbacks | None = None,
          dataset: data_mod.Dataset | None = None, overwrite: bool = False) -> list[dict]:
    """Train per cfg, write the run folder `out`, return the per-epoch records."""
    cfg.validate()
    out = Path(out)
    cb = callbacks or Callbacks()
    device = resolve_device(cfg.device)
    precision = resolve_precision(cfg.precision, device)
    check_out_dir(out, overwrite)
    ds = dataset or data_mod.load(cfg.dataset, cfg.data_dir or None, device)
    torch.manual_seed(cfg.seed)
    num_classes = len(ds.classes)
    h, w = ds.train.images.shape[1:]
    model = build_model(cfg.model, num_classes, cfg.feature_dim, 1, h)
    model = model.to(device, memory_format=torch.channels_last)
    center_loss = CenterLoss(num_classes, cfg.feature_dim, cfg.alpha).to(device)
    optimizer = make_optimizer(model, cfg)
    forward = model
    if cfg.compile:
        try:
            forward = accel.compiled_forward(model, cfg.batch_size, device)
        except accel.CompileError as e:
            raise TrainError(str(e)) from e
    batches = math.ceil(len(ds.train) / cfg.batch_size)
    schedule = Schedule(cfg.lr, int(cfg.warmup_epochs * batches), cfg.epochs * batches)
    if overwrite:
        for stale in ("history.jsonl",):
            (out / stale).unlink(missing_ok=True)
    cb.on_start(cfg, device, precision, ds, 1)
    records = []
    for epoch in range(1, cfg.epochs + 1):
        with accel.cudnn_mode(autotune=False):
            record = train_epoch(model, center_loss, optimizer, schedule, ds, cfg, epoch, device,
                                 precision, cb, forward)
        record.update(evaluate_epoch(model, center_loss, ds, cfg, epoch, device, precision, out))
        save_epoch(out, model, center_loss, ds, cfg, epoch, record)
        records.append(record)
        cb.on_epoch_end(record)
    return records


def train_step(forward: accel.Forward, center_loss: CenterLoss, optimizer: torch.optim.Optimizer,
               x: torch.Tensor, y: torch.Tensor, lam: float, lr: float, device: torch.device,
               precision: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One optimisation step on a batch; returns (features, cross-entropy, center loss), still on
    the device. Nothing here reads a value back, so the host never waits for the device."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    with autocast(device, precision):
        features, logits = forward(x.contiguous(memory_format=torch.channels_last))
    ce = F.cross_entropy(logits.float(), y)
    center = center_loss(features, y)          # also moves the centers by Eq. 4
    loss = ce + lam * center
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return features, ce, center


def train_epoch(model, center_loss, optimizer, schedule, ds, cfg, epoch, device, precision, cb,
                forward: accel.Forward | None = None) -> dict:
    """One pass over the training split; `forward` (default: the model) may be a compiled one."""
    forward = forward or model
    model.train()
    center_loss.train()
    batches = math.ceil(len(ds.train) / cfg.batch_size)
    window, totals = LossWindow(device), LossWindow(device)
    keep = math.ceil(cfg.snapshot_train / cfg.batch_size) if cfg.snapshot_train else 0
    kept_feats, kept_labels = [], []
    cb.on_epoch_start(epoch, batches)
    start = time.perf_counter()
    seen = 0
    step = (epoch - 1) * batches
    for i, (x, y) in enumerate(data_mod.train_batches(ds.train, cfg.batch_size, cfg.seed, epoch,
                                                       cfg.augment, ds.mean, ds.std)):
        features, ce, center = train_step(forward, center_loss, optimizer, x, y, cfg.lam,
                                          schedule(step + i), device, precision)
        window.add(ce, center)
        totals.add(ce, center)
        if i < keep:
            kept_feats.append(features.detach().float())
            kept_labels.append(y)
        seen += y.shape[0]
        cb.on_batch(epoch, i + 1, batches, seen, window)
    train_ce, train_center = totals.read()            # waits for the device: the epoch is done
    seconds = time.perf_counter() - start
    if not (math.isfinite(train_ce) and math.isfinite(train_center)):
        raise TrainError(f"epoch {epoch}: the loss became non-finite (cross-entropy {train_ce}, "
                         f"center loss {train_center}); lower --lr or --lambda. "
                         f"Epochs before {epoch} are saved.")
    record = {"epoch": epoch, "train_ce": train_ce, "train_center": train_center,
              "train_seconds": seconds, "train_images_per_s": seen / seconds,
              "lr": schedule(step + batches - 1)}
    if kept_feats:
        record["_train_snapshot"] = (torch.cat(kept_feats)[:cfg.snapshot_train],
                                     torch.cat(kept_labels)[:cfg.snapshot_train])
    return record


def evaluate_epoch(model, center_loss, ds, cfg, epoch, device, precision, out) -> dict:
    start = time.perf_counter()
    features, logits = infer(model, ds.test, ds.mean, ds.std, device, precision)
    labels = ds.test.labels
    centers = center_loss.centers
    comp = compactness(features, centers, labels)
    return {
        "test_ce": F.cross_entropy(logits, labels).item(),
        "test_center": 0.5 * (features - centers[labels]).pow(2).sum(1).mean().item(),
        "test_accuracy": (logits.argmax(1) == labels).float().mean().item(),
        "nearest_center_accuracy": nearest_center_accuracy(features, centers, labels),
        "intra_distance": comp["intra"], "inter_distance": comp["inter"], "compactness": comp["ratio"],
        "eval_seconds": time.perf_counter() - start,
        "_test_snapshot": (features, labels),
    }


def save_epoch(out: Path, model, center_loss, ds, cfg, epoch: int, record: dict) -> None:
    """Snapshot, epoch checkpoint, latest checkpoint, then history: each file atomic, and history
    last, so a run killed anywhere never lists an epoch whose files are not all there."""
    test_f, test_y = record.pop("_test_snapshot")
    snap = {"test_features": test_f, "test_labels": test_y, "centers": center_loss.centers}
    train_snap = record.pop("_train_snapshot", None)
    if train_snap is not None:
        snap["train_features"], snap["train_labels"] = train_snap
    metrics = {k: v for k, v in record.items() if k != "epoch"}
    meta = {"config": cfg.to_json(), "epoch": str(epoch), "dataset": cfg.dataset,
            "classes": json.dumps(list(ds.classes)), "metrics": json.dumps(metrics)}
    ckpt_io.save_features(out / "features" / ckpt_io.epoch_name(epoch), snap, meta)
    state = {k: v for k, v in model.state_dict().items()}
    h, w = ds.train.images.shape[1:]
    checkpoint = ckpt_io.Checkpoint(cfg, epoch, list(ds.classes), state, center_loss.centers,
                                    [1, h, w], metrics)
    ckpt_io.save_checkpoint(out / "epochs" / ckpt_io.epoch_name(epoch), checkpoint)
    ckpt_io.save_checkpoint(out / "model.safetensors", checkpoint)
    ckpt_io.append_history(out, record)
