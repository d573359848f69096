"""stdout and stderr as a user may hand them to cl: closed (`>&-`), on a full disk
(`> /dev/full`), or a pipe whose reader went away (`| head -1`). Each ends in one `error:` line
on stderr, never a traceback, and training still leaves its run folder resumable."""
from __future__ import annotations

import os
import sys
from typing import Any


class StdoutGone(Exception):
    """Writing to stdout failed; the message says why. Not an OSError on purpose: the commands
    treat OSError as a problem with the user's files, and this is a problem with the terminal."""


def occupy_closed_fds() -> bool:
    """Put /dev/null on any of fds 0, 1 and 2 that is closed, so that no file cl opens later gets
    that number (a print would then land in a checkpoint). True if stdout was closed."""
    closed = []
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            closed.append(fd)
    for fd in closed:           # lowest free number first: each open lands on the fd it fills
        got = os.open(os.devnull, os.O_RDWR)
        if got != fd:
            os.dup2(got, fd)
            os.close(got)
    if 2 in closed or sys.stderr is None:
        sys.stderr = open(os.devnull, "w")
    return 1 in closed or sys.stdout is None


def escape_unencodable() -> None:
    """Let stdout and stderr escape what their encoding cannot show (a class name in Greek on an
    ASCII locale without Python's UTF-8 mode) instead of failing with UnicodeEncodeError."""
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")


def say(line: str) -> None:
    """One line on stderr, if stderr can still take it (`2>&1 | head -1` closes it too)."""
    try:
        print(line, file=sys.stderr, flush=True)
    except OSError:
        pass


def silence_stdout() -> None:
    """/dev/null on fd 1, so that Python's last flush at exit cannot fail a second time."""
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.close(null)
    sys.stdout = open(1, "w", closefd=False)


class GuardedStdout:
    """sys.stdout, with a failed write or flush raised as StdoutGone."""

    def __init__(self, stream: Any):
        self._stream = stream

    def _guard(self, method: str, *args: Any) -> Any:
        try:
            return getattr(self._stream, method)(*args)
        except BrokenPipeError as e:
            raise StdoutGone("stdout was closed by the program reading it (broken pipe)") from e
        except OSError as e:
            raise StdoutGone(f"cannot write to stdout ({e.strerror or e})") from e

    def write(self, text: str) -> int:
        return self._guard("write", text)

    def writelines(self, lines) -> None:
        self._guard("writelines", lines)

    def flush(self) -> None:
        self._guard("flush")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)
