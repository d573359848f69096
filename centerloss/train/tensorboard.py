"""`cl train --tensorboard`: the run as TensorBoard event files in RUN/tensorboard/, written by
TensorBoard's own writer (torch.utils.tensorboard, which needs the tensorboard package).

It is one more listener of the loop's Callbacks, which the CLI composes with its terminal
reporter (callbacks.Fanout); the loop knows nothing of it. What it writes:
- every epoch: each number of the epoch's history.jsonl record (epoch/<name>), and the epoch's
  test features as the picture `cl plot --epoch N` draws (features/test);
- about 20 times an epoch: the cross-entropy and center loss of the batches since the last time,
  and the learning rate of the step (batch/<name>, at the step's number);
- after the run's last epoch: the test features (up to PROJECTOR_POINTS of them, evenly spread)
  as a projector embedding, each point named by its class, with the images as thumbnails when
  they are at hand in memory and small (up to THUMBNAIL_SIDE pixels a side)."""
from __future__ import annotations

import math
from pathlib import Path

import torch

from centerloss.config.recipe import Schedule
from centerloss.data.types import Split
from centerloss.errors import TrainError
from centerloss.plots.features import epoch_figure, render_rgb
from centerloss.plots.snapshots import load_run, load_snapshot
from centerloss.store.runfolder import tensorboard_path
from centerloss.train.loop import Callbacks, LossWindow

try:
    from torch.utils.tensorboard import SummaryWriter
except ImportError:      # torch says why: "TensorBoard logging requires TensorBoard ..."
    SummaryWriter = None

INSTALL = "pip install 'cl[tensorboard]' (or: pip install tensorboard)"
BATCH_POINTS = 20           # batch-loss points per epoch
PROJECTOR_POINTS = 2000     # test features in the projector
THUMBNAIL_SIDE = 64         # larger images make a sprite of tens of megabytes: no thumbnails


def available() -> bool:
    return SummaryWriter is not None


class TensorBoardWriter(Callbacks):
    """Writes a run's figures, feature pictures and projector embedding into RUN/tensorboard/.
    The event files are opened when training starts, after every check of the run has passed,
    so a refused run leaves no folder behind."""

    def __init__(self, run: Path | str):
        if not available():
            raise TrainError(f"--tensorboard needs the tensorboard package; install it with: {INSTALL}")
        self.run = Path(run)
        self.writer = None
        self.cfg = None
        self.dataset = None
        self.schedule: Schedule | None = None
        self.lr_scale = 1.0
        self.every = 1

    def on_start(self, cfg, runtime, dataset, start_epoch: int) -> None:
        self.writer = SummaryWriter(log_dir=str(tensorboard_path(self.run)))
        self.cfg, self.dataset = cfg, dataset

    def on_epoch_start(self, epoch: int, batches: int) -> None:
        self.schedule = Schedule.for_run(self.cfg, batches)
        self.every = max(1, batches // BATCH_POINTS)

    def on_batch(self, epoch: int, batch: int, batches: int, images: int, window: LossWindow) -> None:
        if batch % self.every and batch < batches:
            return
        ce, center = window.read()      # waits for the device, BATCH_POINTS times an epoch
        step = (epoch - 1) * batches + batch
        if math.isfinite(ce):
            self.writer.add_scalar("batch/train_ce", ce, step)
            self.writer.add_scalar("batch/train_center", center, step)
        self.writer.add_scalar("batch/lr", self.schedule(step - 1) * self.lr_scale, step)

    def on_guard(self, event) -> None:
        self.lr_scale = event.lr_scale

    def on_epoch_end(self, record: dict) -> None:
        epoch = record["epoch"]
        for name, value in record.items():
            if name != "epoch" and isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(f"epoch/{name}", value, epoch)
        if self.cfg.feature_dim >= 2:       # 1-D features have no picture (cl plot says so too)
            view = load_run(self.run, "test", [epoch])
            self.writer.add_image("features/test", render_rgb(epoch_figure(view, epoch)), epoch,
                                  dataformats="HWC")
        if epoch == self.cfg.epochs:
            self.add_projector(epoch)
        self.writer.flush()

    def add_projector(self, epoch: int) -> None:
        """The epoch's test features with their class names, and thumbnails where cheap."""
        snap = load_snapshot(self.run, epoch)
        features, labels = snap.features["test"], snap.labels["test"]
        n = features.shape[0]
        index = torch.linspace(0, n - 1, min(n, PROJECTOR_POINTS)).round().long().unique()
        names = [snap.classes[k] for k in labels[index].tolist()]
        thumbnails = None
        test = self.dataset.test
        if isinstance(test, Split) and len(test) == n and max(test.image_shape[1:]) <= THUMBNAIL_SIDE:
            images = test.images.index_select(0, index.to(test.images.device)).cpu()
            images = images.unsqueeze(1) if images.ndim == 3 else images.permute(0, 3, 1, 2)
            thumbnails = images.float() / 255
        self.writer.add_embedding(features[index], metadata=names, label_img=thumbnails,
                                  global_step=epoch, tag="test_features")

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
