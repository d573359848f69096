"""The errors a user can cause, and the stop on request that training raises.

This module imports neither torch nor any module that does: the CLI names these classes at
import time, and `cl --help` must not wait for torch."""
from __future__ import annotations

import signal
from pathlib import Path


class TrainError(Exception):
    """Training cannot start or go on; the message says why and what to do."""


class DataError(Exception):
    """The data cannot be found or read; the message says what was looked for and how to get it."""


class CheckpointError(Exception):
    """A checkpoint or snapshot cannot be used; the message says which file and why."""


class PlotError(Exception):
    """A run cannot be plotted as asked; the message says why and what to do."""


class EmbedError(Exception):
    """Embedding cannot go on as asked; the message says which input and why."""


class Interrupted(Exception):
    """A signal stopped training between two batches, and the state to resume from was saved."""

    def __init__(self, signum: int, epoch: int, batch: int, batches: int, saved: Path):
        self.signum = signum
        self.epoch = epoch
        self.batch = batch
        self.batches = batches
        self.saved = saved
        where = (f"after epoch {epoch - 1}" if batch == 0
                 else f"in epoch {epoch}, after batch {batch} of {batches}")
        super().__init__(f"{signal.Signals(signum).name} stopped training {where}; "
                         f"the state to resume from is saved in {saved}")
