"""The Typer app and what every subcommand shares: consoles and the one-line error."""
from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console

from centerloss import checkpoint as ckpt_io
from centerloss.data import DataError
from centerloss.train import TrainError

app = typer.Typer(add_completion=False, no_args_is_help=True, rich_markup_mode=None,
                  pretty_exceptions_enable=False,
                  help="Train and inspect deep features with softmax + center loss (Wen et al. 2016).")
console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)

# What a user can cause (bad flags, missing files, broken checkpoints): one line, no traceback.
USER_ERRORS = (DataError, TrainError, ckpt_io.CheckpointError, ValueError, OSError)


def fail(message: str, code: int = 1) -> NoReturn:
    err_console.print(f"error: {message}", markup=False)
    raise typer.Exit(code)
