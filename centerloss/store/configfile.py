"""A --config file read (with a size cap, never a whole huge file) and RUN/config.yaml written
(atomically); their YAML is config/file.py's."""
from __future__ import annotations

import os
from pathlib import Path

from centerloss.config import file as config_file
from centerloss.config.config import Config
from centerloss.errors import ConfigError, PathError
from centerloss.store.files import atomic_write, read_bytes
from centerloss.store.runfolder import config_path


def read_config(path: Path | str) -> dict[str, object]:
    """The settings of a --config file by parameter name, checked; ConfigError naming the file
    (and the key) otherwise. Read through the file boundary, with a size cap."""
    path = Path(path)
    if not os.path.lexists(path):
        raise ConfigError(f"{path}: no such file; --config takes a YAML file of option: value "
                          f"lines (cl train --print-config writes one)")
    if os.path.isdir(path):
        raise ConfigError(f"{path}: not a file; --config takes a YAML file of option: value lines")
    try:
        data = read_bytes(path, config_file.MAX_BYTES, "config file")
    except PathError as e:
        raise ConfigError(f"{e}; a config file is a few lines of YAML") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not UTF-8 text; a config file is a few lines of YAML") from None
    return config_file.parse(text, str(path))


def write_run_config(run: Path | str, cfg: Config, epochs_chosen: bool = False,
                     compile_chosen: str = "") -> Path:
    """RUN/config.yaml: the run's config, itself a valid --config."""
    path = config_path(run)
    atomic_write(path, config_file.dump(cfg, epochs_chosen, compile_chosen).encode("utf-8"))
    return path
