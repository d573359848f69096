"""Several Callbacks as one: the CLI's terminal reporter and TensorBoard's writer, say. The loop
takes one Callbacks and knows nothing of what listens."""
from __future__ import annotations

from centerloss.train.loop import Callbacks


class Fanout(Callbacks):
    """Passes every call on to each of `listeners`, in order."""

    def __init__(self, *listeners: Callbacks):
        self.listeners = listeners

    def on_start(self, *args) -> None:
        for cb in self.listeners:
            cb.on_start(*args)

    def on_epoch_start(self, *args) -> None:
        for cb in self.listeners:
            cb.on_epoch_start(*args)

    def on_batch(self, *args) -> None:
        for cb in self.listeners:
            cb.on_batch(*args)

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
