"""safetensors in and out, with metadata: checkpoints, feature snapshots and the history of a
run (whose paths are runfolder.py's). Writes go through files.atomic_write; nothing is ever
unpickled."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as st_save

from centerloss.config import Config
from centerloss.errors import CheckpointError, HeaderError, MissingEpoch
from centerloss.store.files import atomic_write, read_lines
from centerloss.store.header import read_header
from centerloss.store.runfolder import (
    FEATURES,
    available_epochs,
    check_entries,
    checkpoint_path,
    history_path,
    model_path,
)

FORMAT = "cl-checkpoint/1"
FEATURES_FORMAT = "cl-features/1"
MAX_HISTORY_LINE = 1 << 20      # one epoch's record is a few hundred bytes


def save_tensors(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    atomic_write(path, st_save(tensors, metadata=metadata))


def read_tensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """All tensors and the metadata of a safetensors file, or a CheckpointError in one line."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such file")
    try:
        read_header(path)      # our own checks first: a crafted file gets a reason, not a crash
    except HeaderError as e:
        raise CheckpointError(f"{path}: not a valid safetensors file ({e})") from e
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read ({e.strerror or e})") from e
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path}: not a readable safetensors file ({str(e).splitlines()[0]})") from e
    return tensors, metadata


@dataclass
class Checkpoint:
    config: Config
    epoch: int
    classes: list[str]
    model_state: dict[str, torch.Tensor]
    centers: torch.Tensor
    input_shape: list[int] = field(default_factory=lambda: [1, 28, 28])
    metrics: dict = field(default_factory=dict)
    # per-channel {"mean": [...], "std": [...]} of the training data, to feed the model images from
    # elsewhere (cl eval --pairs); empty in checkpoints written before cl stored it
    normalization: dict = field(default_factory=dict)


def save_checkpoint(path: Path, ckpt: Checkpoint) -> None:
    tensors = {f"model.{k}": v for k, v in ckpt.model_state.items()}
    tensors["centers"] = ckpt.centers
    metadata = {
        "format": FORMAT,
        "config": ckpt.config.to_json(),
        "epoch": str(ckpt.epoch),
        "dataset": ckpt.config.dataset,
        "classes": json.dumps(list(ckpt.classes)),
        "input_shape": json.dumps(list(ckpt.input_shape)),
        "metrics": json.dumps(ckpt.metrics),
    }
    if ckpt.normalization:
        metadata["normalization"] = json.dumps(ckpt.normalization)
    save_tensors(path, tensors, metadata)


def _json(path: Path, metadata: dict[str, str], key: str):
    if key not in metadata:
        raise CheckpointError(f"{path}: metadata has no {key!r}; it was not written by cl train")
    try:
        return json.loads(metadata[key])
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path}: metadata {key!r} is not valid JSON ({e.msg})") from e


def load_checkpoint(path: Path) -> Checkpoint:
    tensors, metadata = read_tensors(path)
    if metadata.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a cl checkpoint (metadata format is "
                              f"{metadata.get('format')!r}, expected {FORMAT!r})")
    try:
        config = Config.from_json(metadata.get("config", ""))
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"{path}: bad config metadata ({e})") from e
    classes = _json(path, metadata, "classes")
    input_shape = _json(path, metadata, "input_shape")
    metrics = _json(path, metadata, "metrics")
    try:
        epoch = int(metadata.get("epoch", ""))
    except ValueError as e:
        raise CheckpointError(f"{path}: metadata 'epoch' is not an integer") from e
    if not (isinstance(classes, list) and classes and all(isinstance(c, str) for c in classes)):
        raise CheckpointError(f"{path}: metadata 'classes' must be a non-empty list of names")
    check_input_shape(path, input_shape)
    centers = check_centers(path, tensors.pop("centers", None), len(classes), config.feature_dim)
    normalization = _json(path, metadata, "normalization") if "normalization" in metadata else {}
    if normalization and not _valid_normalization(normalization, input_shape[0]):
        raise CheckpointError(f"{path}: metadata 'normalization' must hold {input_shape[0]} "
                              f"means and {input_shape[0]} positive stds")
    model_state = {k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")}
    check_finite(path, {**tensors, "centers": centers})
    return Checkpoint(config, epoch, classes, model_state, centers, input_shape,
                      metrics if isinstance(metrics, dict) else {}, normalization)


def check_input_shape(path: Path | str, input_shape: object) -> None:
    """CheckpointError unless a file's input_shape is [channels, height, width] of sane sizes."""
    if not (isinstance(input_shape, list) and len(input_shape) == 3
            and all(isinstance(v, int) and not isinstance(v, bool) and 0 < v <= 4096 for v in input_shape)):
        raise CheckpointError(f"{path}: metadata 'input_shape' must be [channels, height, width]")


def check_centers(path: Path | str, centers: torch.Tensor | None, classes: int | None,
                  feature_dim: int) -> torch.Tensor:
    """The centers of a file, checked: a float tensor [classes, feature_dim] (any number of
    classes when classes is None)."""
    ok = (centers is not None and centers.ndim == 2 and centers.is_floating_point()
          and centers.shape[1] == feature_dim and centers.shape[0] > 0
          and (classes is None or centers.shape[0] == classes))
    if not ok:
        want = f"({classes if classes is not None else 'classes'}, {feature_dim})"
        got = None if centers is None else tuple(centers.shape)
        raise CheckpointError(f"{path}: 'centers' should be a float tensor of shape {want}, got {got}")
    return centers


def check_finite(path: Path | str, tensors: dict[str, torch.Tensor]) -> None:
    """CheckpointError if any float tensor holds NaN or infinity: such weights still run, and
    would give exit 0 with made-up figures."""
    bad = [k for k, v in tensors.items() if v.is_floating_point() and not bool(v.isfinite().all())]
    if bad:
        raise CheckpointError(f"{path}: {bad[0]} holds NaN or infinite values ({len(bad)} "
                              f"tensor(s) do), so the model cannot give meaningful results; "
                              f"use an earlier epoch (--epoch) or train again")


def _valid_normalization(norm, channels: int) -> bool:
    if not (isinstance(norm, dict) and set(norm) == {"mean", "std"}):
        return False
    values = [norm["mean"], norm["std"]]
    if not all(isinstance(v, list) and len(v) == channels for v in values):
        return False
    if not all(isinstance(x, (int, float)) and math.isfinite(x) for v in values for x in v):
        return False
    return all(x > 0 for x in norm["std"])


def resolve(run: Path | str = "params", checkpoint: Path | str | None = None, epoch: int | None = None) -> Path:
    """The checkpoint a command should read: an explicit file, an epoch of a run, or its latest."""
    if checkpoint is not None:
        return Path(checkpoint)
    run = Path(run)
    check_entries(run)
    if epoch is None:
        if not run.is_dir():
            raise CheckpointError(f"{run}: no such run folder; pass --run with a folder `cl train` "
                                  f"wrote (train one with: cl train --out {run}), or --checkpoint FILE")
        if not model_path(run).is_file():
            raise CheckpointError(f"{run} holds no trained model (no model.safetensors); train one "
                                  f"with: cl train --out {run}, or pass --checkpoint FILE")
        return model_path(run)
    path = checkpoint_path(run, epoch)
    if not path.is_file():
        pruned = epoch in available_epochs(run, FEATURES)    # its snapshot stayed: --keep-checkpoints
        raise MissingEpoch(run, epoch, available_epochs(run),
                           "its checkpoint was pruned; --keep-checkpoints all keeps every "
                           "epoch's" if pruned else "")
    return path


def save_features(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    save_tensors(path, tensors, {"format": FEATURES_FORMAT, **metadata})


def write_history(run: Path, records: list[dict]) -> None:
    """history.jsonl rewritten whole (it is small) through atomic_write, so it is never half a line."""
    text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in records)
    atomic_write(history_path(run), text.encode())


def read_history(run: Path | str) -> list[dict]:
    """The records of history.jsonl, one per finished epoch, checked against the run: each a JSON
    object whose "epoch" is its line number and whose numbers are finite. CheckpointError naming
    the file and line otherwise."""
    check_entries(run)
    path = history_path(run)
    if not path.exists():
        return []
    records = []
    lines = read_lines(path, MAX_HISTORY_LINE, "history")
    for number, line in enumerate((raw for raw in lines if raw.strip()), 1):
        try:
            record = json.loads(line)
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise CheckpointError(f"{path}: line {number} is not JSON ({e}); the file is damaged") from e
        if not isinstance(record, dict) or record.get("epoch") != number:
            raise CheckpointError(f"{path}: line {number} is not the record of epoch {number}; the "
                                  f"file does not belong to this run or is damaged")
        bad = _not_finite(record)
        if bad:
            raise CheckpointError(f"{path}: line {number} holds a value that is not a finite number "
                                  f"({bad}); the file is damaged")
        records.append(record)
    return records


def _not_finite(value, key: str = "") -> str:
    """The key of the first non-finite number in a JSON value, or ""."""
    if isinstance(value, float) and not math.isfinite(value):
        return key or "?"
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for k, v in items:
        found = _not_finite(v, f"{key}.{k}" if key else str(k))
        if found:
            return found
    return ""
