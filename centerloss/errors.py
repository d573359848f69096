"""Every error a user can cause derives from ClError; the CLI catches that class alone, so any
other exception is a bug and shows its traceback. Also the stop on request that training raises.

This module imports neither torch nor any module that does: the CLI names these classes at
import time, and `cl --help` must not wait for torch."""
from __future__ import annotations

import signal
from pathlib import Path


class ClError(Exception):
    """Something a user can cause and fix (a bad flag, a missing or broken file, data that do not
    fit): the message is one line that says what is wrong and what to do. exit_code is what the
    CLI exits with: 2 for a value the command cannot accept (a usage error), 1 otherwise."""
    exit_code = 1


class OptionError(ClError, ValueError):
    """A value given to cl (a flag, or a config read back) lies outside what it accepts. Also a
    ValueError, which is what a library caller expects of a bad argument."""
    exit_code = 2


class PathError(ClError):
    """A path cannot be used as given (missing, a link where cl wants a file, a part of it a
    file, no permission, too large to read); the message names the path and why."""


class TrainError(ClError):
    """Training cannot start or go on; the message says why and what to do."""


class DataError(ClError):
    """The data cannot be found or read; the message says what was looked for and how to get it."""


class CheckpointError(ClError):
    """A checkpoint or snapshot cannot be used; the message says which file and why."""


class HeaderError(CheckpointError, ValueError):
    """A file is not a well-formed safetensors file; the message says what is wrong."""


class DivergenceError(TrainError):
    """The guard returned as often as it may in a row and the loss still would not stay finite."""


class PlotError(ClError):
    """A run cannot be plotted as asked; the message says why and what to do."""


class FigureFormatError(PlotError, ValueError):
    """A figure's file name asks for a format matplotlib cannot write."""


class VerificationError(DataError, ValueError):
    """The pairs cannot be verified as asked: one kind of pair is missing, or too few for the folds."""


class EmbedError(ClError):
    """Embedding cannot go on as asked; the message says which input and why."""


class ExportError(ClError):
    """The model cannot be exported as asked; the message says why and what to do."""


class DistributedError(ClError):
    """The distributed run cannot start; the message says why and what to do."""


class CompileError(ClError):
    """torch.compile cannot work here; the message says what is missing."""


class ConfigError(OptionError):
    """A --config file cannot be used: missing, too large, not YAML, not a mapping, an unknown
    key or a value of the wrong type; the message names the file and the key."""


class ImageInputError(ClError, ValueError):
    """Images given to a loaded model (centerloss.load) are not ones it can take: the message
    says what they are and what it takes."""


class WriteError(OSError, ClError):
    """A file could not be written (a full disk, a folder without write permission); the message
    names it. Still an OSError, for callers that catch those."""

    def __str__(self) -> str:
        return f"cannot write {self.filename} ({self.strerror})"


class MissingEpoch(CheckpointError, PlotError):
    """The run holds no such epoch: one message for eval, embed, export and plot alike, whichever
    of the run's files (checkpoints or feature snapshots) was looked for."""

    def __init__(self, run: Path | str, epoch: int, present: list[int], why: str = ""):
        listed = ", ".join(map(str, present)) if present else "none"
        why = f" ({why})" if why else ""
        super().__init__(f"{run} has no epoch {epoch}{why}; epochs present: {listed}")


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
