"""A --config file read (with a size cap, never a whole huge file) and RUN/config.yaml written
(atomically); their YAML is config/file.py's."""
from __future__ import annotations

import os
import stat
from pathlib import Path

from centerloss.config import file as config_file
from centerloss.config.config import Config
from centerloss.errors import ConfigError
from centerloss.store.files import atomic_write
from centerloss.store.runfolder import config_path


def read_config(path: Path | str) -> dict[str, object]:
    """The settings of a --config file by parameter name, checked; ConfigError naming the file
    (and the key) otherwise."""
    path = Path(path)
    try:
        regular = stat.S_ISREG(os.stat(path).st_mode)      # not a folder, a FIFO or a device
        data = read_capped(path, config_file.MAX_BYTES) if regular else b""
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file; --config takes a YAML file of option: value "
                          f"lines (cl train --print-config writes one)") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read ({e.strerror or e})") from None
    except ValueError as e:
        raise ConfigError(f"{path}: {e}; a config file is a few lines of YAML") from None
    if not regular:
        raise ConfigError(f"{path}: not a file; --config takes a YAML file of option: value lines")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text; a config file is a few lines of YAML") from None
    return config_file.parse(text, str(path))


def write_run_config(run: Path | str, cfg: Config, epochs_chosen: bool = False) -> Path:
    """RUN/config.yaml: the run's config, itself a valid --config."""
    path = config_path(run)
    atomic_write(path, config_file.dump(cfg, epochs_chosen).encode("utf-8"))
    return path


def read_capped(path: Path, limit: int) -> bytes:
    """The bytes of path, read up to limit + 1 so that a huge file (or /dev/zero) is never read
    whole; ValueError when there are more than limit, OSError when it cannot be read."""
    with open(path, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise ValueError(f"larger than {limit:,} bytes")
    return data
