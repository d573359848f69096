"""Terminal output for `cl train`: a rich progress bar on a terminal, plain lines elsewhere."""
from __future__ import annotations

import json
import sys
import time

from rich.console import Console
from rich.table import Table
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from centerloss.train import Callbacks, LossWindow

REFRESH_S = 0.25   # how often the bar reads the losses back from the device


def plural(n: int, one: str, many: str) -> str:
    return f"{n:,} {one if n == 1 else many}"


def epoch_line(r: dict, epochs: int) -> str:
    return (f"epoch {r['epoch']:>{len(str(epochs))}}/{epochs}  "
            f"ce {r['train_ce']:.4f}  center {r['train_center']:.4f}  "
            f"test acc {100 * r['test_accuracy']:.2f}%  "
            f"center acc {100 * r['nearest_center_accuracy']:.2f}%  "
            f"compactness {r['compactness']:.3f}  "
            f"{r['train_seconds']:.1f} s  {r['train_images_per_s']:,.0f} img/s")


class TrainReporter(Callbacks):
    """Progress bar with batch i/N, recent losses, images/s and ETA; one summary line per epoch.

    The bar is drawn only on a terminal: in a log file each epoch is one line. --quiet keeps only
    the final line; --json writes one JSON object per epoch on stdout and nothing else there."""

    def __init__(self, console: Console, quiet: bool = False, as_json: bool = False):
        self.console = console
        self.quiet = quiet
        self.as_json = as_json
        self.live = console.is_terminal and not quiet and not as_json
        self.progress: Progress | None = None
        self.task = None
        self.last_read = 0.0
        self.epochs = 0
        self.start = 0.0

    def on_start(self, cfg, device, precision, dataset, start_epoch) -> None:
        self.epochs = cfg.epochs
        self.start = time.perf_counter()
        if self.quiet or self.as_json:
            return
        batches = -(-len(dataset.train) // cfg.batch_size)
        self.console.print(
            f"cl train: {cfg.model} on {dataset.name} ({len(dataset.train):,} train / "
            f"{len(dataset.test):,} test), {cfg.feature_dim}-D features, "
            f"{cfg.head if cfg.head == 'softmax' else f'{cfg.head} m {cfg.margin:g} s {cfg.scale:g}'}, "
            f"lambda {cfg.lam:g}, "
            f"alpha {cfg.alpha:g}, {plural(cfg.epochs, 'epoch', 'epochs')} of {plural(batches, 'batch', 'batches')} of "
            f"{cfg.batch_size}, "
            f"{device.type} {precision}", highlight=False)

    def on_epoch_start(self, epoch: int, batches: int) -> None:
        if not self.live:
            return
        self.progress = Progress(
            TextColumn(f"epoch {epoch}/{self.epochs}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("  {task.fields[losses]}"), TextColumn("  {task.fields[speed]}"),
            TimeRemainingColumn(), console=self.console, transient=True)
        self.progress.start()
        self.task = self.progress.add_task("train", total=batches, losses="", speed="")
        self.epoch_start = time.perf_counter()
        self.last_read = self.epoch_start

    def on_batch(self, epoch: int, batch: int, batches: int, images: int, window: LossWindow) -> None:
        if not self.live:
            return
        now = time.perf_counter()
        if now - self.last_read < REFRESH_S and batch < batches:
            return
        self.last_read = now
        ce, center = window.read()
        speed = images / max(now - self.epoch_start, 1e-9)
        self.progress.update(self.task, completed=batch, losses=f"ce {ce:.4f}  center {center:.4f}",
                             speed=f"{speed:,.0f} img/s")

    def on_epoch_end(self, record: dict) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
        if self.as_json:
            print(json.dumps(record, sort_keys=True), flush=True)
        elif not self.quiet:
            self.console.print(epoch_line(record, self.epochs), highlight=False)
        sys.stdout.flush()

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


def print_verification(console: Console, v: dict, source: str) -> None:
    """The verification figures of `cl eval --verify` or `--pairs`, one per row."""
    console.print(f"verification: {v['pairs']:,} pairs ({v['matching']:,} matching), {source}")
    table = Table(show_header=False, box=None)
    table.add_row("ROC AUC", f"{v['auc']:.4f}")
    table.add_row("equal error rate", f"{v['eer']:.2%}")
    for far, tar in v["tar_at_far"].items():
        # below 1 / (non-matching pairs) a false accept rate cannot be measured, only bounded
        note = "  (too few non-matching pairs to measure)" if float(far) < v["far_resolution"] else ""
        table.add_row(f"TAR at FAR {far}", f"{tar:.2%}{note}")
    table.add_row(f"{v['folds']}-fold accuracy", f"{v['accuracy']:.2%} +- {v['accuracy_std']:.2%}")
    table.add_row("mean best threshold", f"{v['threshold']:.4f}")
    console.print(table)
