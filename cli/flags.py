"""Typer options built from centerloss.options, the one table of every option; a command states
only what differs in its own use of a flag (its help, say), never a default the core holds."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import typer

from centerloss.config import OPTIONS, default_of

_SAME = object()


def flag(name: str, *, help: str | None = None, default: Any = _SAME) -> Any:
    """The typer.Option of the table's option `name` ("--lambda"). --help shows the default once:
    the value, or the words in the help where the value would mislead (0 standing for 64). An
    option with choices lists them in --help ([a|b|c]) and completes them in the shell; the value
    stays a plain string, so a wrong one gets cl's own message (options.check), not Click's."""
    opt = OPTIONS[name]
    text = help or opt.help
    value = default_of(name) if default is _SAME else default
    decls = [f"{name}/--no-{name[2:]}"] if opt.toggle else [name]
    extra: dict[str, Any] = {}
    if opt.choices or opt.suggest:
        extra = {"metavar": opt.metavar or "[" + "|".join(opt.choices) + "]",
                 "autocompletion": completer(opt.choices or opt.suggest)}
    return typer.Option(value, *decls, help=text, show_default="[default:" not in text, **extra)


def completer(choices: tuple[str, ...]) -> Callable[..., list[str]]:
    """Shell completion of an option's value: the choices that start with what is typed."""
    def complete(incomplete: str) -> list[str]:
        return [c for c in choices if c.startswith(incomplete)]
    return complete
