"""Writing files so that a crash never leaves half of one: every write goes to a temporary file
in the same folder and is renamed into place, so the path holds the old bytes or the new ones."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from centerloss.errors import WriteError


def atomic_write(path: Path, data: bytes) -> None:
    """path holds data, whole, or (on any failure) what it held before; WriteError names it."""
    path = Path(path)
    try:
        _atomic_write(path, data)
    except OSError as e:
        if isinstance(e, WriteError):
            raise
        raise WriteError(e.errno, e.strerror or str(e), str(path)) from e


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp makes the file private (0600); give it the mode any new file of this user gets,
        # so a run folder can be shared like one written by plain open().
        if hasattr(os, "fchmod"):     # POSIX; Windows has no such modes
            umask = os.umask(0o022)
            os.umask(umask)
            os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
