"""Entry point of `cl`. The command modules (and with them torch) are imported inside main(), so
that a Ctrl-C or a closed stdout during that second of imports still ends in one line."""
from __future__ import annotations

import logging
import sys
from typing import TYPE_CHECKING

from centerloss import cpu

from . import streams

if TYPE_CHECKING:
    import typer


def load_app() -> typer.Typer:
    """The Typer app with every subcommand registered (importing a module registers its commands)."""
    # importing a module registers its command; --help lists them in this order
    from . import export, plot, embed, train, eval  # noqa: F401, I001
    from .app import app
    return app


def __getattr__(name: str) -> typer.Typer:
    if name == "app":           # `from cli.main import app`, as the tests do
        return load_app()
    raise AttributeError(name)


def main() -> None:
    cpu.prepare()    # before any command imports torch: OpenMP reads its settings only then
    # matplotlib logs notices about its cache folder (say, under a read-only HOME): not ours to show
    logging.getLogger("matplotlib").setLevel(logging.ERROR)
    if streams.occupy_closed_fds():
        print("error: stdout is closed; give cl somewhere to write (> FILE, or > /dev/null "
              "to discard the output)", file=sys.stderr)
        sys.exit(1)
    sys.stdout = streams.GuardedStdout(sys.stdout)
    code: int | str | None = 0
    try:
        try:
            load_app()(prog_name="cl")
        except SystemExit as e:
            code = e.code
        sys.stdout.flush()     # now, where a full disk can still be reported in one line
    except streams.StdoutGone as e:
        streams.silence_stdout()
        streams.say(f"error: {e}")
        code = 1
    except KeyboardInterrupt:
        streams.say("error: interrupted")
        code = 130
    sys.exit(code)


if __name__ == "__main__":
    main()
