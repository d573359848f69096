"""Ctrl-C (SIGINT), SIGTERM and SIGHUP (a dropped SSH session) as a request to stop at the end
of the current batch, saving the state to resume from.

The handler only records the request; the training loop reads it between batches, a plain
Python attribute read, so it costs no host-device sync. A second signal means the user will not
wait: it raises KeyboardInterrupt at once (every file on disk is still whole: writes are atomic)."""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager
from typing import Iterator

SIGNALS = tuple(s for s in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)) if s)


class StopRequest:
    def __init__(self) -> None:
        self.signum: int | None = None

    @property
    def requested(self) -> bool:
        return self.signum is not None


@contextmanager
def stop_on_signals() -> Iterator[StopRequest]:
    """A StopRequest set by SIGINT, SIGTERM or SIGHUP while the block runs; the old handlers come back after."""
    request = StopRequest()
    # Python lets only the main thread install handlers; elsewhere (a notebook's worker thread,
    # say) the caller keeps its own handling and the request is simply never set.
    if threading.current_thread() is not threading.main_thread():
        yield request
        return

    def handle(signum: int, frame) -> None:
        if request.requested:
            raise KeyboardInterrupt
        request.signum = signum

    previous = {s: signal.signal(s, handle) for s in SIGNALS}
    try:
        yield request
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
