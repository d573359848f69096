"""The file boundary: every file cl reads or writes goes through here.

- Writes are atomic: a temporary file in the same folder, renamed into place, so the path holds
  the old bytes or the new ones, never half of either. `exclusive` creates the path only if
  nothing is there (two commands writing one output: one wins, the other is told).
- A temporary file carries the writer's process id in its name, so the next write of the same
  file removes those of writers that are gone (killed with -9) and leaves a live writer's alone.
- Reads are bounded: a regular file, at most `limit` bytes, or lines streamed one at a time.
- An OSError about a path a user gave (a component that is a file, a link loop, no permission)
  becomes a PathError: one line naming the path, instead of a traceback.
"""
from __future__ import annotations

import errno
import os
import re
import stat
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from centerloss.errors import ClError, PathError, WriteError

# errno -> what it means for a path a person typed
_REASONS = {
    errno.ENOENT: "no such file or folder",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.ELOOP: "symbolic links loop",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EISDIR: "is a folder, not a file",
    errno.ENAMETOOLONG: "the name is too long",
    errno.ENOSPC: "no space left on the device",
    errno.EROFS: "the file system is read-only",
    errno.EEXIST: "already exists",
}


def reason(e: OSError) -> str:
    return _REASONS.get(e.errno or -1) or e.strerror or str(e)


def path_error(e: OSError, path: Path | str | None = None, doing: str = "read") -> PathError:
    """One line for an OSError about a path: what was done, the path, and why it failed."""
    where = path if path is not None else (e.filename or "a file")
    return PathError(f"cannot {doing} {where}: {reason(e)}")


@contextmanager
def user_path(path: Path | str, doing: str = "read") -> Iterator[None]:
    """Turn an OSError raised in the block into a PathError naming path (cl's own ClErrors,
    WriteError among them, pass through unchanged)."""
    try:
        yield
    except ClError:
        raise
    except OSError as e:
        raise path_error(e, e.filename or path, doing) from e


def is_regular(path: Path | str) -> bool:
    """Whether path is a regular file itself, not a link to one (a run folder from an archive
    must not lead cl to a file outside it)."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def check_entry(path: Path | str, folder: bool = False) -> None:
    """PathError if something is at path but is a symbolic link or not a regular file (a real
    folder when `folder`); nothing there is fine."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    except OSError as e:
        raise path_error(e, path) from e
    if stat.S_ISLNK(mode):
        raise PathError(f"{path} is a symbolic link; cl does not follow links in a run folder: "
                        f"replace it with the {'folder' if folder else 'file'} itself or remove it")
    if folder and not stat.S_ISDIR(mode):
        raise PathError(f"{path} should be a folder but is not; move it away")
    if not folder and not stat.S_ISREG(mode):
        raise PathError(f"{path} should be a file but is {'a folder' if stat.S_ISDIR(mode) else 'not'};"
                        f" move it away")


def read_bytes(path: Path | str, limit: int, what: str = "file", follow: bool = True) -> bytes:
    """The bytes of a regular file of at most `limit` bytes; PathError naming it otherwise.
    follow=False refuses a symbolic link (files inside a run folder)."""
    path = Path(path)
    if not follow:
        check_entry(path)
    with user_path(path):
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise PathError(f"cannot read {path}: not a regular file")
            if st.st_size > limit:
                raise PathError(f"{path}: the {what} is {st.st_size:,} bytes, more than the "
                                f"{limit:,} cl reads; is it the right file?")
            data = f.read(limit + 1)
    if len(data) > limit:       # it grew while we read
        raise PathError(f"{path}: the {what} is more than the {limit:,} bytes cl reads")
    return data


def read_lines(path: Path | str, max_line: int, what: str = "file") -> Iterator[bytes]:
    """The lines of a regular file one at a time (memory bounded by max_line whatever the file's
    length), without their line ends; PathError naming the file for a line past max_line."""
    path = Path(path)
    with user_path(path):
        with open(path, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise PathError(f"cannot read {path}: not a regular file")
            for number, line in enumerate(iter(lambda: f.readline(max_line + 1), b""), 1):
                if len(line) > max_line and not line.endswith(b"\n"):
                    raise PathError(f"{path}: line {number} of the {what} is longer than "
                                    f"{max_line:,} bytes; is it the right file?")
                yield line.rstrip(b"\r\n")


def check_output(path: Path | str, overwrite: bool = True) -> None:
    """PathError, before any work, unless a file can be written at path: not a folder, no part of
    its folder a file, nothing there unless overwrite."""
    path = Path(path)
    with user_path(path, "write"):
        if os.path.lexists(path):
            if os.path.isdir(path):
                raise PathError(f"{path} is a folder; name a file to write")
            if not overwrite:
                raise PathError(f"{path} already exists; pass --overwrite to replace it")
        ancestor = path.parent
        while not os.path.lexists(ancestor) and ancestor != ancestor.parent:
            ancestor = ancestor.parent
        if not os.path.isdir(ancestor):
            raise PathError(f"cannot write {path}: {ancestor} is a file, not a folder")
        os.stat(ancestor)       # a link loop or a folder we may not enter fails here


def missing_folders(*paths: Path | str) -> list[Path]:
    """The folders among paths and their parents that do not exist yet, deepest first: what a
    step that creates them leaves behind if it fails (remove_empty_folders)."""
    found: dict[Path, None] = {}
    for path in map(Path, paths):
        while not os.path.lexists(path) and path != path.parent:
            found[path] = None
            path = path.parent
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def remove_empty_folders(folders: list[Path]) -> None:
    """Remove those of folders that are empty, deepest first (a failed download's tree)."""
    for folder in folders:
        try:
            os.rmdir(folder)
        except OSError:
            pass


def temp_pattern(name: str) -> re.Pattern:
    """The names atomic_write gives its temporary files for a file called name."""
    return re.compile(rf"\.{re.escape(name)}\.(\d+)\.[^/]+\.tmp")


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:         # someone else's process: alive
        return True
    return True


def remove_stale_temps(folder: Path, name: str) -> None:
    """Delete the temporary files that writers of folder/name left when they were killed."""
    pattern = temp_pattern(name)
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return
    for entry in entries:
        m = pattern.fullmatch(entry.name)
        if m and entry.is_file(follow_symlinks=False) and not _alive(int(m.group(1))):
            try:
                os.unlink(entry.path)
            except OSError:
                pass


def atomic_write(path: Path, data: bytes, exclusive: bool = False) -> None:
    """path holds data, whole, or (on any failure) what it held before; WriteError names it.
    exclusive: only if nothing is at path yet; else a PathError saying so (--overwrite replaces)."""
    path = Path(path)
    try:
        _atomic_write(path, data, exclusive)
    except OSError as e:
        if isinstance(e, WriteError):
            raise
        if exclusive and e.errno == errno.EEXIST:
            raise PathError(f"{path} already exists; pass --overwrite to replace it") from e
        raise WriteError(e.errno, e.strerror or reason(e), str(path)) from e


def _atomic_write(path: Path, data: bytes, exclusive: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path.parent, path.name)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
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
        if exclusive:
            os.link(tmp, path)      # fails with EEXIST if anything is there, atomically
            os.unlink(tmp)
        else:
            os.replace(tmp, path)
    except BaseException:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        raise
