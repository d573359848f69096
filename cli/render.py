"""Terminal output for `cl train`: a rich progress bar on a terminal, plain lines elsewhere."""
from __future__ import annotations

import json
import math
import sys
import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from centerloss.config import keep, recipe
from centerloss.config.limits import tidy_json
from centerloss.data.batches import batches_per_epoch
from centerloss.device import cpu
from centerloss.evaluation.verification import FEW_IMPOSTORS
from centerloss.model.build import checkpoint_size
from centerloss.store.retention import disk_bound
from centerloss.train.loop import Callbacks, LossWindow

from . import liveview

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


def retrieval_line(r: dict) -> str | None:
    """The epoch's retrieval figures in one line, or None when the record has none."""
    if "precision_at_1" not in r:
        return None
    figures = "  ".join(f"{label} {'n/a' if r[key] is None else f'{r[key]:.4f}'}" for label, key in (
        ("precision@1", "precision_at_1"), ("R-precision", "r_precision"),
        ("MAP@R", "mean_average_precision_at_r"), ("NMI", "nmi"), ("AMI", "ami")))
    return f"retrieval, test split leave-one-out, {r['retrieval_distance']}: {figures}"


def fixed(value: float, width: int = 6) -> str:
    """`value` in `width` characters while its integer part fits: decimals give way to digits,
    so the bar's columns stay put when a loss passes 10."""
    if not math.isfinite(value):
        return f"{value:>{width}}"
    for decimals in range(max(0, width - len(f"{abs(value):.0f}") - (value < 0) - 1), -1, -1):
        text = f"{value:.{decimals}f}"
        if len(text) <= width:
            return f"{text:>{width}}"
    return text


def checkpoint_policy(cfg, dataset) -> str:
    """--keep-checkpoints and the disk it bounds: 'keeping 3 epoch checkpoints (13 MB at most, ...)'."""
    each = checkpoint_size(cfg, len(dataset.classes), dataset.input_shape)
    return f"{keep.describe(cfg.keep_checkpoints)} ({disk_bound(keep.keep_count(cfg.keep_checkpoints), each)})"


def view_wanted(live: bool | None, feature_dim: int, console: Console) -> bool:
    """--live/--no-live as given; by default on for 2-D features where the terminal has room.
    1-D features have no second axis to draw."""
    if live is not None:
        return live and feature_dim >= 2
    width, height = console.size
    return feature_dim == 2 and height >= liveview.MIN_ROWS and width >= liveview.MIN_COLUMNS


class ViewProgress(Progress):
    """The progress bar with the live feature view under it."""

    def __init__(self, *columns, view: liveview.LiveView | None = None, **kwargs):
        self.view = view     # before Progress's own init, which renders once
        super().__init__(*columns, **kwargs)

    def get_renderables(self):
        yield from super().get_renderables()
        if self.view is not None and self.view.frame is not None:
            yield self.view.frame


class TrainReporter(Callbacks):
    """Progress bar with batch i/N, recent losses, images/s and ETA; one summary line per epoch.

    The bar is drawn only on a terminal: in a log file each epoch is one line. --quiet keeps only
    the final line; --json writes one JSON object per epoch on stdout and nothing else there.
    `live` (None: 2-D features on a terminal of at least liveview.MIN_ROWS rows) draws the
    recent training features under the bar; `window` shows them in a matplotlib window too,
    redrawn at each epoch's end."""

    def __init__(self, console: Console, quiet: bool = False, as_json: bool = False,
                 live: bool | None = None, window: bool = False, auto_epochs: bool = False):
        self.console = console
        self.auto_epochs = auto_epochs      # --epochs left out: recipe.epochs_for chose them
        self.quiet = quiet
        self.as_json = as_json
        self.live = console.is_terminal and not quiet and not as_json
        self.live_flag = live
        self.window_wanted = window
        self.view: liveview.LiveView | None = None    # the recent features, for either picture
        self.draw_view = False                         # under the bar
        self.frame_kept = False                        # its last picture printed to stay
        self.window = None                             # livewindow.FeatureWindow
        self.progress: Progress | None = None
        self.task = None
        self.last_read = 0.0
        self.epochs = 0
        self.start = 0.0

    def on_start(self, cfg, runtime, dataset, start_epoch) -> None:
        self.epochs = cfg.epochs
        self.start = time.perf_counter()
        self.draw_view = self.live and view_wanted(self.live_flag, cfg.feature_dim, self.console)
        if self.draw_view or self.window_wanted:
            self.view = liveview.LiveView(dataset.classes, cfg.feature_dim, self.console.color_system)
        if self.window_wanted:
            from .livewindow import FeatureWindow  # pyplot and a GUI toolkit: only when asked
            self.window = FeatureWindow(dataset.classes, f"cl train: {cfg.model} on {dataset.name}")
        if self.quiet or self.as_json:
            return
        # the loop's own count: a last batch too small for BatchNorm is dropped (batches.py)
        batches = batches_per_epoch(len(dataset.train), cfg.batch_size, runtime.ctx.world)
        batch = min(cfg.batch_size, len(dataset.train))     # 54 images make one batch of 54
        self.console.print(
            f"cl train: {cfg.model} on {dataset.name} ({len(dataset.train):,} train / "
            f"{len(dataset.test):,} test), {cfg.feature_dim}-D features, "
            f"{cfg.head if cfg.head == 'softmax' else f'{cfg.head} m {cfg.margin:g} s {cfg.scale:g}'}, "
            f"lambda {cfg.lam:g}, "
            f"alpha {cfg.alpha:g}, {plural(cfg.epochs, 'epoch', 'epochs')}{self.epochs_note(cfg, batches)} "
            f"of {plural(batches, 'batch', 'batches')} of "
            f"{batch}, {checkpoint_policy(cfg, dataset)}, "
            f"{runtime.device.type} {runtime.precision}"
            + (f", {runtime.compile_note}" if runtime.compile_note else "")
            + (f", {cpu.describe()}" if runtime.device.type == "cpu" else ""),
            highlight=False)
        for note in recipe.notes(cfg, len(dataset.test)):
            self.console.print(f"note: {note}", highlight=False)

    def epochs_note(self, cfg, batches: int) -> str:
        """Why the run has more epochs than the default, when it chose them itself, and what to do
        when its steps are fewer than the recipe aims at, whoever chose the epochs."""
        steps = cfg.epochs * batches
        if not self.auto_epochs:
            if steps >= recipe.MIN_STEPS:
                return ""
            return (f" ({steps:,} step{'' if steps == 1 else 's'}, fewer than the "
                    f"{recipe.MIN_STEPS:,} the recipe aims at; "
                    f"{recipe.steps_advice(cfg.epochs, batches)})")
        if cfg.epochs <= recipe.DEFAULT_EPOCHS:
            return ""
        if steps < recipe.MIN_STEPS:
            return (f" (the default {recipe.DEFAULT_EPOCHS} raised to its limit: {steps:,} steps, "
                    f"fewer than the {recipe.MIN_STEPS:,} it aims at; a smaller --batch-size makes "
                    f"more steps an epoch, --epochs N more epochs)")
        return (f" (the default {recipe.DEFAULT_EPOCHS} raised to make {steps:,} "
                f"steps; --epochs N chooses)")

    def on_epoch_start(self, epoch: int, batches: int) -> None:
        if self.view is not None:
            self.view.start_epoch(epoch)
        self.epoch_start = self.last_read = time.perf_counter()
        if not self.live:
            return
        # redrawn when on_batch updates it, not by a thread: the view is costly to re-render
        self.progress = ViewProgress(
            TextColumn(f"epoch {epoch:>{len(str(self.epochs))}}/{self.epochs}"), BarColumn(),
            MofNCompleteColumn(), TextColumn("  {task.fields[losses]}"),
            TextColumn("  {task.fields[speed]}"), TimeRemainingColumn(), console=self.console,
            transient=True, auto_refresh=False, view=self.view)
        self.progress.start()
        self.task = self.progress.add_task("train", total=batches, losses="", speed="")
        self.progress.refresh()      # the bar at 0/N while the first batch runs (or compiles)

    def on_batch(self, epoch: int, batch: int, batches: int, images: int, window: LossWindow) -> None:
        if not (self.live or self.window):
            return
        now = time.perf_counter()
        if now - self.last_read < REFRESH_S and batch < batches:
            return
        self.last_read = now
        if self.window is not None:
            self.window.poll()       # so the window answers its window system between epochs
        if not self.live:
            return
        ce, center = window.read()
        speed = images / max(now - self.epoch_start, 1e-9)
        self.progress.update(self.task, completed=batch, losses=f"ce {fixed(ce)}  center {fixed(center)}",
                             speed=f"{speed:>9,.0f} img/s")
        if self.draw_view and (self.view.due(now) or batch == batches):
            width, height = self.console.size
            self.view.redraw((width, min(liveview.MAX_PLOT_ROWS, max(8, height - 2))))
        self.progress.refresh()

    def on_features(self, features, labels, centers) -> None:
        if self.view is not None:
            self.view.add(features, labels, centers)

    def on_evaluate(self, epoch: int) -> None:
        if self.progress is not None:    # evaluation takes seconds: say so rather than sit at N/N
            self.progress.update(self.task, speed="evaluating the test split")
            self.progress.refresh()

    def on_epoch_end(self, record: dict) -> None:
        if self.progress is not None:
            self.progress.stop()       # transient: the bar and the view go with it ...
            self.progress = None
            if record["epoch"] == self.epochs:
                self.keep_frame()                      # ... but the last picture stays on screen
        snap = self.view.snapshot() if self.window is not None else None
        if snap is not None:
            points, labels, centers, note = snap
            self.window.show(points, labels, centers, record["epoch"], note, record)
        if self.as_json:
            self.console.out(json.dumps(tidy_json(record), sort_keys=True), highlight=False)
        elif not self.quiet:
            self.console.print(epoch_line(record, self.epochs), highlight=False)
        sys.stdout.flush()

    def on_guard(self, event) -> None:
        """One line, even under --quiet or --json (on stderr then): the run changed course."""
        what = ("the loss became non-finite" if event.reason == "non-finite" else
                f"the loss jumped to {event.loss:.4g} from a recent {event.recent:.4g}")
        line = (f"guard: epoch {event.epoch}, by batch {event.batch}: {what}; back to batch "
                f"{event.back_to}, learning rate x{event.lr_scale:g} from now on")
        if self.quiet or self.as_json:
            Console(stderr=True, highlight=False, soft_wrap=True).print(line, markup=False)
        else:
            self.console.print(line, markup=False)

    def keep_frame(self) -> None:
        """Print the view's latest picture where the transient bar no longer erases it (once)."""
        if self.draw_view and self.view.frame is not None and not self.frame_kept:
            self.console.print(self.view.frame)
            self.frame_kept = True

    def close(self) -> None:
        """The end of the command, whatever ended it: a run stopped by Ctrl-C, or by an error
        mid-epoch, keeps its last picture on screen too, as a finished one does."""
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
        self.keep_frame()


def print_verification(console: Console, v: dict, source: str) -> None:
    """The verification figures of `cl eval --verify` or `--pairs`, one per row."""
    console.print(f"verification: {v['pairs']:,} pairs ({v['matching']:,} matching), {source}")
    table = Table(show_header=False, box=None)
    table.add_row("ROC AUC", f"{v['auc']:.4f}")
    table.add_row("equal error rate", f"{v['eer']:.2%}")
    for far, tar in v["tar_at_far"].items():
        # below 1 / (non-matching pairs) a false accept rate cannot be measured, only bounded
        note = "  (too few non-matching pairs to measure)" if float(far) < v["far_resolution"] else ""
        admitted = int(float(far) * v["non_matching"] + 1e-9)    # impostors its threshold may pass
        if not note and admitted < FEW_IMPOSTORS:
            note = f"  (rests on at most {plural(admitted, 'impostor pair', 'impostor pairs')})"
        table.add_row(f"TAR at FAR {far}", f"{tar:.2%}{note}")
    table.add_row(f"{v['folds']}-fold accuracy", f"{v['accuracy']:.2%} +- {v['accuracy_std']:.2%}")
    table.add_row("mean best threshold", f"{v['threshold']:.4f}")
    console.print(table)
