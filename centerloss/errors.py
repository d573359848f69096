"""What training raises for its caller to report: a failure, or a stop on request."""
from __future__ import annotations

import signal
from pathlib import Path


class TrainError(Exception):
    """Training cannot start or go on; the message says why and what to do."""


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
