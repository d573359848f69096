"""The run folder: the path of every file in it, whether it holds a run, whether we can write
there, and clearing an old run for --overwrite. File formats are checkpoint.py's and resume.py's.

    RUN/model.safetensors              weights + centers of the latest epoch
    RUN/epochs/epoch_NNN.safetensors   the same for every epoch
    RUN/features/epoch_NNN.safetensors test (and a train sample of) features, labels, centers
    RUN/history.jsonl                  one JSON object of metrics per epoch
    RUN/config.yaml                    the run's resolved config, itself a valid --config
    RUN/tensorboard/                   cl train --tensorboard's event files and projector
    RUN/resume.safetensors             the state a stopped run resumes from (resume.py)
    RUN/plots/                         what cl plot draws, unless told otherwise
    RUN/.lock                          held while a run trains"""
from __future__ import annotations

import os
import re
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from centerloss.errors import TrainError
from centerloss.store.files import check_entry, is_regular, remove_empty_folders

try:
    import fcntl
except ImportError:         # Windows: no flock; runs there go unlocked
    fcntl = None

MODEL = "model.safetensors"
HISTORY = "history.jsonl"
RESUME = "resume.safetensors"
LOCK = ".lock"
CONFIG = "config.yaml"
TENSORBOARD = "tensorboard"
EPOCHS, FEATURES, PLOTS = "epochs", "features", "plots"
SUBFOLDERS = (EPOCHS, FEATURES)
EPOCH_FILE = re.compile(r"epoch_\d{3,}\.safetensors")
# What TensorBoard's writer puts in RUN/tensorboard/: event files, the projector's config, and
# per embedding a folder STEP/TAG/ of these files.
TENSORBOARD_FILE = re.compile(r"events\.out\.tfevents\..+|projector_config\.pbtxt")
STEP_FOLDER = re.compile(r"\d{5,}")
PROJECTOR_FILE = re.compile(r"tensors\.tsv|metadata\.tsv|sprite\.png")
# What atomic_write leaves behind when a process is killed between creating and renaming.
TEMP_FILE = re.compile(r"\.(model|resume|epoch_\d{3,})\.safetensors\..+\.tmp|\.(history\.jsonl|config\.yaml)\..+\.tmp")


def epoch_name(epoch: int) -> str:
    return f"epoch_{epoch:03d}.safetensors"


def model_path(run: Path | str) -> Path:
    return Path(run) / MODEL


def history_path(run: Path | str) -> Path:
    return Path(run) / HISTORY


def config_path(run: Path | str) -> Path:
    return Path(run) / CONFIG


def tensorboard_path(run: Path | str) -> Path:
    return Path(run) / TENSORBOARD


def resume_path(run: Path | str) -> Path:
    return Path(run) / RESUME


def checkpoint_path(run: Path | str, epoch: int) -> Path:
    return Path(run) / EPOCHS / epoch_name(epoch)


def snapshot_path(run: Path | str, epoch: int) -> Path:
    return Path(run) / FEATURES / epoch_name(epoch)


def plot_path(run: Path | str, name: str) -> Path:
    """Where cl plot writes a figure of the run by default (name: "curves.png", say)."""
    return Path(run) / PLOTS / name


def available_epochs(run: Path | str, sub: str = EPOCHS) -> list[int]:
    """The epochs of a run with a file in its subfolder `sub` (EPOCHS or FEATURES), sorted;
    PathError first if an entry of the run folder is a link or not what its name says."""
    check_entries(run)
    return sorted(int(p.stem.split("_", 1)[1]) for p in _named(Path(run) / sub, EPOCH_FILE))


def check_entries(run: Path | str) -> None:
    """PathError unless every entry of the run folder that cl reads or removes is what its name
    says: a regular file, or a real folder for epochs/, features/ and plots/, never a symbolic
    link. A run folder may come from someone else's archive: checked before anything in it is
    read, replaced or removed, so a link cannot lead cl to read or delete a file outside it."""
    run = Path(run)
    if not os.path.isdir(run):
        return
    for name in (MODEL, HISTORY, RESUME, LOCK, CONFIG):
        check_entry(run / name)
    for sub in (*SUBFOLDERS, PLOTS, TENSORBOARD):
        check_entry(run / sub, folder=True)
    for sub in SUBFOLDERS:
        for path in _named(run / sub, EPOCH_FILE):
            check_entry(path)


def holds_run(out: Path) -> bool:
    out = Path(out)
    return (any((out / name).exists() for name in (MODEL, HISTORY, RESUME))
            or any(available_epochs(out, sub) for sub in SUBFOLDERS))


def check_out_dir(out: Path, overwrite: bool, resume: bool = False) -> None:
    """TrainError unless training may write into out, before any data is read or work is done."""
    out = Path(out)
    check_entries(out)
    if overwrite and resume:
        raise TrainError("--resume continues the run in --out and --overwrite replaces it; "
                         "pass only one")
    if not resume and not overwrite and holds_run(out):
        raise TrainError(f"{out} already holds a run; pass --resume to continue it, --overwrite "
                         f"to replace it, or --out to train elsewhere")
    ensure_writable(out)


def ensure_writable(out: Path) -> None:
    """Prove that files can be created in out (or, if it does not exist yet, in the folder that
    will hold it) and in its subfolders, so that an unwritable --out fails now rather than after
    the first epoch's work. Leaves nothing behind, not even an empty folder."""
    out = Path(out)
    try:
        existing = out
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if not existing.is_dir():
            raise TrainError(f"cannot write the run folder {out}: {existing} is not a folder; "
                             f"choose another --out")
        for folder in (existing, *(out / sub for sub in SUBFOLDERS)):
            if folder.is_dir():
                fd, probe = tempfile.mkstemp(prefix=".cl-write-probe.", dir=folder)
                os.close(fd)
                os.unlink(probe)
    except OSError as e:
        raise TrainError(f"cannot write the run folder {out} ({e.strerror or e}); "
                         f"choose a writable --out") from e


def _named(folder: Path, pattern: re.Pattern) -> list[Path]:
    """The entries of folder (a real one, not a link) whose names match pattern."""
    if not os.path.isdir(folder) or os.path.islink(folder):
        return []
    return [p for p in folder.iterdir() if pattern.fullmatch(p.name)]


def own_files(folder: Path, pattern: re.Pattern) -> list[Path]:
    """The regular files of folder (a real one, not a link) that are cl's by their names."""
    return [p for p in _named(folder, pattern) if is_regular(p)]


def remove_temp_files(out: Path) -> None:
    """Delete the temporary files of writes that a kill interrupted; they are never read."""
    out = Path(out)
    for folder in (out, *(out / sub for sub in SUBFOLDERS)):
        for path in own_files(folder, TEMP_FILE):
            path.unlink(missing_ok=True)


def clear_run(out: Path) -> None:
    """Remove what `cl train` wrote into out, and nothing else (plots and other files stay).

    Every epoch file goes, not only those past the new run's last epoch: a new run that stops
    early must not leave the old run's later epochs in the folder, looking like its own."""
    out = Path(out)
    check_entries(out)          # nothing is removed unless every entry is what its name says
    for name in (HISTORY, RESUME, MODEL, CONFIG):    # history first: no listed epoch outlives its files
        (out / name).unlink(missing_ok=True)
    for sub in SUBFOLDERS:
        for path in own_files(out / sub, EPOCH_FILE):
            path.unlink()
    remove_temp_files(out)
    clear_tensorboard(out)


def clear_tensorboard(out: Path) -> None:
    """Remove the event files and projector files --tensorboard wrote into RUN/tensorboard/, so an
    old run's curves do not mix with the new one's; other files (and any link) stay."""
    folder = Path(out) / TENSORBOARD
    if folder.is_symlink() or not folder.is_dir():
        return
    for path in own_files(folder, TENSORBOARD_FILE):
        path.unlink()
    for step in folder.iterdir():
        if not (STEP_FOLDER.fullmatch(step.name) and step.is_dir() and not step.is_symlink()):
            continue
        for tag in step.iterdir():
            if tag.is_dir() and not tag.is_symlink():
                for path in own_files(tag, PROJECTOR_FILE):
                    path.unlink()
                _remove_if_empty(tag)
        _remove_if_empty(step)


def _remove_if_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:      # something of the user's is in it
        pass


@contextmanager
def run_lock(out: Path) -> Iterator[None]:
    """Hold an OS lock on RUN/.lock for the whole run, so that a second `cl train` on the same
    folder is refused at once instead of mixing its files with this run's. flock is released by
    the kernel when the process ends, however it ends, so a killed run never strands the folder.

    A folder this creates is removed again if the run leaves nothing in it (bad data, say)."""
    out = Path(out)
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd = _locked(out / LOCK)
    except OSError as e:
        if created:
            remove_empty_folders([out])
        raise TrainError(f"cannot write the run folder {out} ({e.strerror or e}); "
                         f"choose a writable --out") from e
    try:
        yield
    finally:
        # Unlink before unlocking: a run that opened the old file then finds it gone and retries.
        (out / LOCK).unlink(missing_ok=True)
        os.close(fd)
        if created:
            try:
                out.rmdir()       # only if empty: nothing of a failed start stays behind
            except OSError:
                pass


def _locked(path: Path) -> int:
    """An open descriptor holding an exclusive lock on path, or TrainError if another run has it."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        if fcntl is None:
            return fd
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise TrainError(f"{path.parent} is in use by another cl train (it holds {path}); "
                             f"wait for that run to end, or train elsewhere with --out") from None
        except OSError:
            os.close(fd)
            raise
        try:   # the holder before us may have unlinked the file between our open and our lock
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            try:
                os.ftruncate(fd, 0)
                os.write(fd, f"{os.getpid()}\n".encode())
            except OSError:         # a full disk: ours, since we hold it; leave no stale lock
                path.unlink(missing_ok=True)
                os.close(fd)
                raise
            return fd
        os.close(fd)
