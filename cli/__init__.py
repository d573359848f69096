"""The `cl` command line: one thin function per subcommand over the centerloss core."""
from .main import app

__all__ = ["app"]
