"""The Typer app and what every subcommand shares: consoles and the one-line error."""
from __future__ import annotations

import sys
import traceback
from typing import Any, NoReturn, Sequence

import typer
from rich.console import Console
from typer.core import TyperGroup

# errors, not checkpoint/data/train: those import torch, and `cl --help` must answer without it
from centerloss.errors import ClError
from centerloss.store.files import path_error

from .streams import StdoutGone

try:  # typer vendors click since 0.2x; an older typer raises click's own exceptions
    from typer._click.exceptions import ClickException, UsageError
except ImportError:
    from click.exceptions import ClickException, UsageError

# Everything cl prints goes through these two. Text from users and data sets (class and file
# names, paths) is printed as it is: no markup, no emoji codes, no highlighting is read into it.
# A log file or pipe has no width: 120 columns keep tables (ten classes of confusion) unwrapped.
console = Console(markup=False, emoji=False, highlight=False, soft_wrap=True,
                  width=None if sys.stdout.isatty() else 120)
err_console = Console(stderr=True, markup=False, emoji=False, highlight=False, soft_wrap=True)

# What anything else that escapes a command is: a bug, shown with its traceback and this line.
REPORT = ("error: this is a bug in cl, not a problem with what you gave it; please report it "
          "with the command you ran and the traceback above")


def say_error(message: str) -> None:
    # a path that is not UTF-8 must not turn the message itself into an encoding error
    text = message.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    err_console.print(f"error: {text}", markup=False)


def fail(message: str, code: int = 1) -> NoReturn:
    say_error(message)
    raise typer.Exit(code)


class OneLineErrors(TyperGroup):
    """Typer's own usage errors (unknown option or command, a value of the wrong type) as one
    `error:` line with exit code 2, like cl's other errors, instead of a Usage/Try/Error block."""

    def main(self, args: Sequence[str] | None = None, prog_name: str | None = None,
             complete_var: str | None = None, standalone_mode: bool = True, **extra: Any) -> Any:
        args = sys.argv[1:] if args is None else list(args)
        if not standalone_mode or not args:      # a bare `cl` shows the help, as Typer does
            return super().main(args, prog_name, complete_var, standalone_mode, **extra)
        if "" in args:    # Path("") is ".": `--out ""` would write into the current folder
            i = args.index("")
            after = f" after {args[i - 1]}" if i and args[i - 1].startswith("-") else ""
            err_console.print(f"error: cl: an empty argument{after}; give a value", markup=False)
            sys.exit(2)
        try:
            code = super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except ClickException as e:
            where = e.ctx.command_path if isinstance(e, UsageError) and e.ctx else prog_name or "cl"
            hint = f"; see {where} --help" if isinstance(e, UsageError) else ""
            message = " ".join(e.format_message().split()).rstrip(".")
            err_console.print(f"error: {where}: {message}{hint}", markup=False)
            sys.exit(e.exit_code)
        except typer.Abort as e:
            if isinstance(e.__cause__, KeyboardInterrupt):   # Ctrl-C; training says more itself
                err_console.print("error: interrupted (Ctrl-C); no output was written", markup=False)
                sys.exit(130)
            err_console.print("error: aborted", markup=False)
            sys.exit(1)
        except ClError as e:           # what a user can cause and fix: one line, no traceback
            say_error(str(e))
            sys.exit(e.exit_code)
        except StdoutGone:             # the terminal, not cl: main() says it in one line
            raise
        except OSError as e:
            if e.filename is None:     # not about a path: a bug like any other
                traceback.print_exc()
                err_console.print(REPORT, markup=False)
                sys.exit(1)
            say_error(str(path_error(e)))   # a path the user gave: one line naming it
            sys.exit(1)
        except Exception:              # a bug: the traceback, for the report it asks for
            traceback.print_exc()
            err_console.print(REPORT, markup=False)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)

    def format_commands(self, ctx: Any, formatter: Any) -> None:
        """Each command's first sentence whole, wrapped, where Click would cut it at the width
        left beside the names ("and write the...")."""
        rows = [(name, cmd.get_short_help_str(limit=10_000)) for name in self.list_commands(ctx)
                if (cmd := self.get_command(ctx, name)) is not None and not cmd.hidden]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


app = typer.Typer(cls=OneLineErrors, add_completion=True, no_args_is_help=True,
                  rich_markup_mode=None, pretty_exceptions_enable=False,
                  context_settings={"help_option_names": ["-h", "--help"]},
                  help="Train and inspect deep features with softmax + center loss (Wen et al. 2016).")


def _print_version(value: bool) -> None:
    if value:
        from centerloss import __version__  # centerloss's package imports no torch
        console.print(f"cl {__version__}")
        raise typer.Exit()


@app.callback()
def _options(version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                          help="Print cl's version and exit.")) -> None:
    # The group's own options; its help text is the one given to typer.Typer above.
    return None
