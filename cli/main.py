"""Entry point of `cl`. The command modules (and with them torch) are imported inside main(), so
that a Ctrl-C or a closed stdout during that second of imports still ends in one line."""
from __future__ import annotations

import atexit
import logging
import os
import sys
from typing import TYPE_CHECKING

from centerloss.device import cpu

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
    streams.escape_unencodable()
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
    if "torch" in sys.modules:     # a command ran: skip the interpreter's teardown
        exit_now(code, handlers=not under_torchrun())
    sys.exit(code)


def under_torchrun() -> bool:
    """Whether this process is one rank of several; never imports torch (`cl --help` does not)."""
    if "torch" not in sys.modules:        # no command ran, so no process group exists
        return False
    from centerloss.device import distributed
    return distributed.launched().world > 1


def exit_now(code: int | str | None, handlers: bool = True) -> None:
    """End the process without finalizing the interpreter: every file is written and closed by
    now, so what is left is to run the exit handlers (temporary folders, logging; `handlers`) and
    to flush the output. Finalizing an interpreter that loaded torch takes about half a second
    (0.47 against 0.02 s after `cl eval`, 2026-12-07, docs/performance.md), after every command.
    Under torchrun, where the handlers are skipped as they always were, finalizing can also abort
    a rank: the gloo group stays alive to the end (DDP's reducer keeps a reference that even gc
    cannot free), and its worker threads release the tensors of the last collectives a moment
    after those complete; releasing a tensor takes the GIL, and a thread that asks for it while
    the interpreter finalizes is torn down inside a destructor: the rank aborts ("terminate
    called without an active exception", about one run in six on a busy CPU)."""
    if handlers:
        run_handlers = getattr(atexit, "_run_exitfuncs", None)
        if run_handlers is None:        # not CPython: finalize as usual
            sys.exit(code)
        run_handlers()
    if isinstance(code, str):
        print(code, file=sys.stderr)
        code = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError, streams.StdoutGone):    # the output is gone: nothing to add
            pass
    os._exit(code or 0)


if __name__ == "__main__":
    main()
