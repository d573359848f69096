"""Entry point of `cl`: importing the command modules registers their subcommands on the app."""
from centerloss import cpu

from . import train_eval  # noqa: F401  (registers train, eval)
from . import plot_embed  # noqa: F401  (registers plot, embed)
from .app import app


def main() -> None:
    cpu.prepare()    # before any command imports torch: OpenMP reads its settings only then
    app(prog_name="cl")


if __name__ == "__main__":
    main()
