"""Several Callbacks as one: the CLI's terminal reporter and TensorBoard's writer, say. The loop
takes one Callbacks and knows nothing of what listens.

Reading a LossWindow empties it, so listeners that read the loop's one window would each get the
batches since the other's read. Each listener gets a window of its own instead, fed from the
loop's on the device (two additions a batch, no wait for the device)."""
from __future__ import annotations

from centerloss.train.loop import Callbacks, LossWindow


class Fanout(Callbacks):
    """Passes every call on to each of `listeners`, in order."""

    def __init__(self, *listeners: Callbacks):
        self.listeners = listeners
        self.windows: list[LossWindow] = []

    def on_start(self, *args) -> None:
        for cb in self.listeners:
            cb.on_start(*args)

    def on_epoch_start(self, *args) -> None:
        for cb in self.listeners:
            cb.on_epoch_start(*args)

    def on_batch(self, epoch: int, batch: int, batches: int, images: int, window: LossWindow) -> None:
        if not self.windows:
            self.windows = [LossWindow(window.sums.device) for _ in self.listeners]
        for own in self.windows:
            own.sums += window.sums
            own.batches += window.batches
        window.sums.zero_()
        window.batches = 0
        for cb, own in zip(self.listeners, self.windows):
            cb.on_batch(epoch, batch, batches, images, own)

    def on_features(self, *args) -> None:
        for cb in self.listeners:
            cb.on_features(*args)

    def on_evaluate(self, *args) -> None:
        for cb in self.listeners:
            cb.on_evaluate(*args)

    def on_epoch_end(self, *args) -> None:
        for cb in self.listeners:
            cb.on_epoch_end(*args)

    def on_guard(self, *args) -> None:
        for cb in self.listeners:
            cb.on_guard(*args)

    def close(self) -> None:
        """Close each listener that has something to close (a progress bar, an event file)."""
        for cb in self.listeners:
            close = getattr(cb, "close", None)
            if close is not None:
                close()
