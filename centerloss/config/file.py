"""`cl train --config FILE.yaml` and RUN/config.yaml: a run's config as YAML, read and written.

The keys are cl train's options without their dashes (`lambda`, `batch_size` or `batch-size`),
plus the Config fields that have no flag (`momentum`, `weight_decay`, `warmup_epochs`,
`snapshot_train`), so that the config.yaml of a run describes all of it. Each value is checked
here, with the file and the key named: its type, its choices and its range (options.check). The
file's text comes from store/ (read with a size cap); nothing here touches the disk.

YAML is read with yaml.safe_load, which builds only plain values: no tag in a file can make an
object, let alone run code."""
from __future__ import annotations

import dataclasses
import os
import re

import yaml

from centerloss.config import keep, recipe
from centerloss.config.config import Config
from centerloss.config.options import check, flag_of
from centerloss.errors import ConfigError, OptionError

MAX_BYTES = 1 << 20          # a config is a few hundred bytes; anything near this is not one
# cl train's options that are not Config fields but may be set in a file: name -> type
EXTRA = {"out": "str", "tensorboard": "bool"}
# options that say what this one command does, not what the run is
COMMAND_LINE_ONLY = ("config", "print-config", "resume", "overwrite", "quiet", "json", "live",
                     "live-window")
PATHS = ("data_dir", "out")
_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")   # YAML 1.1 reads 1e-3 as a string

_FIELD_TYPES = {f.name: str(f.type) for f in dataclasses.fields(Config)}


def _key(name: str) -> str:
    """A field's key in a file: its flag without the dashes, in snake case (lam: lambda)."""
    return flag_of(name)[2:].replace("-", "_")


KEYS: dict[str, str] = {**{_key(name): name for name in _FIELD_TYPES}, **{k: k for k in EXTRA}}


def parse(text: str, source: str) -> dict[str, object]:
    """The settings of a config file's text, by parameter name (lambda: lam), each checked;
    ConfigError naming `source` and the key otherwise. null leaves an option to its default
    where the option has one that is no value (epochs, lr, margin, scale)."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{source}: not valid YAML{where} ({problem})") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: a config file must be a mapping of option: value, one per "
                          f"line (lambda: 0.1); this one holds a {_kind(raw)}")
    settings: dict[str, object] = {}
    given_as: dict[str, str] = {}
    for key, value in raw.items():
        name = _name(key, source)
        if name in given_as:
            raise ConfigError(f"{source}: {given_as[name]!r} and {key!r} set the same option; "
                              f"keep one")
        given_as[name] = key
        settings[name] = _value(name, key, value, source)
    return settings


def _name(key: object, source: str) -> str:
    if not isinstance(key, str):
        raise ConfigError(f"{source}: key {key!r} is not an option name; keys are cl train's "
                          f"options without the dashes (lambda, batch_size, ...)")
    plain = key.strip().lstrip("-")
    if plain.replace("_", "-") in COMMAND_LINE_ONLY:
        raise ConfigError(f"{source}: key {key!r}: --{plain.replace('_', '-')} is given on the "
                          f"command line only, not in a config file")
    name = KEYS.get(plain.replace("-", "_"))
    if name is None:
        raise ConfigError(f"{source}: unknown key {key!r}; keys are cl train's options without "
                          f"the dashes: {', '.join(KEYS)}")
    return name


def _value(name: str, key: str, value: object, source: str) -> object:
    kind = EXTRA.get(name) or _FIELD_TYPES[name]
    wanted = "a number" if "float" in kind else "an integer" if "int" in kind else \
        "true or false" if "bool" in kind else "a string"
    if name == "keep_checkpoints":
        wanted = "last, all or a number of epochs"
    if name == "compile":
        wanted = "true, false or blocks"
    ok = True
    if value is None:
        ok = "None" in kind
    elif name == "keep_checkpoints":
        ok = isinstance(value, (str, int)) and not isinstance(value, bool)
        value = str(value)
    elif name == "compile":
        ok = isinstance(value, bool) or value == "blocks"
    elif "bool" in kind:
        ok = isinstance(value, bool)
    elif "float" in kind:
        if isinstance(value, str) and _NUMBER.fullmatch(value.strip()):
            value = float(value)
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif "int" in kind:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, str)
    if not ok:
        raise ConfigError(f"{source}: key {key!r} must be {wanted}, got {_kind(value)} {value!r}")
    if isinstance(value, str) and name in PATHS:
        if name == "out" and not value.strip():     # "" would be the current folder
            raise ConfigError(f"{source}: key {key!r} is empty; give the run folder")
        value = os.path.expanduser(value)
    try:
        if name == "keep_checkpoints":
            keep.keep_count(value)
        elif name not in EXTRA:
            check(flag_of(name), value)
    except OptionError as e:
        raise ConfigError(f"{source}: key {key!r}: {e}") from None
    return value


def _kind(value: object) -> str:
    names = {dict: "mapping", list: "list", str: "string", bool: "boolean", int: "integer",
             float: "number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


def dump(cfg: Config, epochs_chosen: bool = False, compile_chosen: str = "") -> str:
    """cfg as a config file: every field under its key, in Config's order, with a note where a
    value was left to a rule. epochs_chosen: cfg.epochs is the number the default rule chose
    (recipe.epochs_for); compile_chosen: why the compile rule chose cfg.compile. The file holds
    those values, so that the run it repeats is this one."""
    lines = ["# cl train config: every setting of the run. Repeat it with",
             "#   cl train --config config.yaml --out NEW_FOLDER",
             "# Keys are cl train's options without the dashes; a flag on the command line wins.",
             "# null leaves a setting to its default rule."]
    for f in dataclasses.fields(Config):
        value = getattr(cfg, f.name)
        if f.name == "keep_checkpoints" and str(value).isdecimal():
            value = int(value)
        line = yaml.safe_dump({_key(f.name): value}, default_flow_style=False, sort_keys=False,
                              allow_unicode=True).strip()
        lines.append(line + _note(cfg, f.name, epochs_chosen, compile_chosen))
    return "\n".join(lines) + "\n"


def _note(cfg: Config, name: str, epochs_chosen: bool, compile_chosen: str = "") -> str:
    if name == "compile" and compile_chosen:
        return f"  # chosen by the rule ({compile_chosen}); null lets it choose again"
    if name == "epochs" and cfg.epochs is None:
        return (f"  # the default, chosen when the data are loaded: {recipe.DEFAULT_EPOCHS}, or "
                f"more to make {recipe.MIN_STEPS} steps, at most {recipe.MAX_AUTO_EPOCHS}")
    if name == "epochs" and epochs_chosen:
        return (f"  # chosen by the default rule ({recipe.DEFAULT_EPOCHS}, or more to make "
                f"{recipe.MIN_STEPS} steps); null lets it choose again")
    if name == "lr" and cfg.lr is None:
        return (f"  # the default: {recipe.BASE_LR:g} * sqrt(batch_size / {recipe.BASE_BATCH}) = "
                f"{recipe.peak_lr(cfg):.4g}")
    if name == "data_dir" and not cfg.data_dir:
        return "  # '': the cache folder, ~/.cache/cl/data"
    return ""
