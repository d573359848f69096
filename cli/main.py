"""Entry point of `cl`: importing the command modules registers their subcommands on the app."""
from . import train_eval  # noqa: F401  (registers train, eval)
from . import plot_embed  # noqa: F401  (registers plot, embed)
from . import export  # noqa: F401  (registers export)
from .app import app


def main() -> None:
    app(prog_name="cl")


if __name__ == "__main__":
    main()
