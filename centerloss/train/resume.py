"""The state a run resumes from, RUN/resume.safetensors, and the config a resumed run may use.

Batches are a pure function of (seed, epoch) and the learning rate of the step, so the state
is what training itself changes: the model, the centers, the optimizer's momentum, where in
which epoch it stands, what that epoch has summed so far, the history and the RNG. It is
written when a run starts, after every epoch and when a signal stops a run mid-epoch. Like
every cl file it is safetensors: the optimizer state is flattened into tensors plus JSON,
never pickled."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import torch

from centerloss.config.config import Config
from centerloss.config.options import flag_of
from centerloss.errors import CheckpointError, HeaderError, OptionError
from centerloss.model.build import check_weights
from centerloss.store import checkpoint as ckpt_io
from centerloss.store.header import read_header
from centerloss.store.runfolder import RESUME, check_entries, resume_path as state_path

FORMAT = "cl-resume/1"
# Flags that change how or how long a run trains, not what it trains: a resumed run may change
# them. Any other flag given with --resume must repeat the run's own value.
FREE_ON_RESUME = ("epochs", "device", "precision", "data_dir", "memory_mb", "workers", "compile",
                  "keep_checkpoints")


@dataclass
class EpochProgress:
    """How far the current epoch has come: enough to finish it as if it had never stopped."""
    epoch: int
    batch: int = 0                          # batches of the epoch already trained
    loss_sums: torch.Tensor | None = None   # [2] cross-entropy and center loss summed over them
    guard_events: list[dict] = field(default_factory=list)          # the guard's returns so far


@dataclass
class ResumeState:
    config: Config
    progress: EpochProgress
    history: list[dict]                     # the records of the epochs before progress.epoch
    input_shape: list[int]
    model_state: dict[str, torch.Tensor]
    centers: torch.Tensor
    optimizer_state: dict
    rng_cpu: torch.Tensor
    rng_cuda: torch.Tensor | None = None
    guard: dict = field(default_factory=dict)   # Guard.state(): its learning-rate factor and level
    data_fingerprint: str = ""              # of the data set trained on (preflight.fingerprint)


def capture(cfg: Config, progress: EpochProgress, history: list[dict], input_shape: list[int],
            model: torch.nn.Module, centers: torch.Tensor, optimizer: torch.optim.Optimizer,
            device: torch.device, guard: dict | None = None, data_fingerprint: str = "") -> ResumeState:
    rng_cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return ResumeState(cfg, progress, list(history), list(input_shape), model.state_dict(), centers,
                       optimizer.state_dict(), torch.get_rng_state(), rng_cuda, dict(guard or {}),
                       data_fingerprint)


def save_state(out: Path | str, state: ResumeState) -> Path:
    """Write RUN/resume.safetensors atomically and return its path."""
    p = state.progress
    tensors = {f"model.{k}": v for k, v in state.model_state.items()}
    tensors["centers"] = state.centers
    tensors["rng.cpu"] = state.rng_cpu
    if state.rng_cuda is not None:
        tensors["rng.cuda"] = state.rng_cuda
    if p.loss_sums is not None:
        tensors["loss_sums"] = p.loss_sums.float()
    # Tensors of the optimizer state go in as tensors, its numbers and flags as JSON.
    scalars: dict[str, dict] = {}
    for index, entries in state.optimizer_state["state"].items():
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{index}.{key}"] = value
            else:
                scalars.setdefault(str(index), {})[key] = value
    metadata = {
        "format": FORMAT, "config": state.config.to_json(), "epoch": str(p.epoch),
        "batch": str(p.batch), "history": json.dumps(state.history),
        "input_shape": json.dumps(state.input_shape), "data_fingerprint": state.data_fingerprint,
        "optimizer": json.dumps({"param_groups": state.optimizer_state["param_groups"],
                                 "scalars": scalars}),
        "guard": json.dumps({**state.guard, "events": p.guard_events}),
    }
    path = state_path(out)
    ckpt_io.save_tensors(path, tensors, metadata)
    return path


class Header(NamedTuple):
    """What a resume state's header says: the run's config and where it stands."""
    config: Config
    epoch: int
    batch: int


def _position(path: Path, metadata: dict[str, str], config: Config | None = None
              ) -> tuple[Config, int, int, list[dict]]:
    """The header's config (parsed unless given: a header is parsed once per command), epoch,
    batch and history, or a CheckpointError."""
    if metadata.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a cl resume state (format {metadata.get('format')!r})")
    try:
        cfg = config or Config.from_json(metadata.get("config", ""))
        epoch, batch = int(metadata.get("epoch", "")), int(metadata.get("batch", ""))
        history = json.loads(metadata.get("history", ""))
    except (ValueError, TypeError) as e:
        raise CheckpointError(f"{path}: bad resume metadata ({e})") from e
    if not (epoch >= 1 and batch >= 0 and isinstance(history, list) and len(history) == epoch - 1
            and all(isinstance(r, dict) and r.get("epoch") == i + 1 for i, r in enumerate(history))):
        raise CheckpointError(f"{path}: resume metadata disagrees with itself (epoch {epoch}, "
                              f"batch {batch}, {len(history) if isinstance(history, list) else '?'} "
                              f"history records)")
    return cfg, epoch, batch, history


def peek(out: Path | str) -> Header:
    """(config, epoch, batch) of a run's resume state, from its header alone (no tensors read)."""
    path = state_path(out)
    check_entries(out)
    if not path.exists():
        raise CheckpointError(f"{out} holds no state to resume from ({RESUME} is missing); "
                              f"train it without --resume, with --overwrite to replace what is there")
    try:
        _, metadata = read_header(path)
    except (HeaderError, OSError) as e:
        raise CheckpointError(f"{path}: cannot be read ({e})") from e
    cfg, epoch, batch, _ = _position(path, metadata)
    return Header(cfg, epoch, batch)


def resume_config(saved: Config, given: dict[str, object], epoch: int, batch: int) -> Config:
    """The run's config with the flags given on resume applied. A flag that would change what the
    run trains (--lambda, --model, ...) must repeat the run's value; --epochs may extend the run
    (the cosine schedule then stretches to the new length) but not cut what it has begun. The
    result is validated: train() takes it as it is, with the Header it came from."""
    cfg = dataclasses.replace(saved)
    for name, value in given.items():
        if name in FREE_ON_RESUME:
            setattr(cfg, name, value)
        elif value != getattr(saved, name):
            raise OptionError(f"{flag_of(name)} {value} conflicts with the run being resumed, which "
                             f"has {flag_of(name)} {getattr(saved, name)}; drop the flag, or train "
                             f"a new run elsewhere with --out")
    begun = epoch if batch > 0 else epoch - 1
    if cfg.epochs < begun:
        raise OptionError(f"--epochs {cfg.epochs} is fewer than the {begun} "
                         f"epoch{'' if begun == 1 else 's'} the run has begun; pass --epochs "
                         f"{begun} or more")
    cfg.validate()
    return cfg


def load_state(out: Path | str, cfg: Config, header: Header | None = None) -> ResumeState:
    """Read and check RUN/resume.safetensors; cfg is the config the run goes on with. With the
    Header that resume_config made cfg from, that check is done; without one (a library caller's
    own cfg), cfg must agree with the saved config on everything but FREE_ON_RESUME."""
    path = state_path(out)
    if header is None:
        header = peek(out)
        saved = header.config
        for f in dataclasses.fields(Config):
            if f.name not in FREE_ON_RESUME and getattr(cfg, f.name) != getattr(saved, f.name):
                raise CheckpointError(f"{path}: the run was trained with {f.name}="
                                      f"{getattr(saved, f.name)!r}, not {getattr(cfg, f.name)!r}")
    tensors, metadata = ckpt_io.read_tensors(path)
    saved, epoch, batch, history = _position(path, metadata, header.config)
    if (epoch, batch) != (header.epoch, header.batch):
        raise CheckpointError(f"{path}: changed while it was being read; is another cl train "
                              f"writing to this folder?")
    try:
        input_shape = json.loads(metadata["input_shape"])
        optimizer = json.loads(metadata["optimizer"])
        groups, scalars = optimizer["param_groups"], optimizer["scalars"]
        guard = json.loads(metadata.get("guard", "{}"))    # absent in states before the guard
        events = guard.pop("events", [])
        guard = {"lr_scale": float(guard.get("lr_scale", 1.0)), "ema": float(guard.get("ema", -1.0))}
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise CheckpointError(f"{path}: bad resume metadata ({type(e).__name__}: {e})") from e
    if not (0 < guard["lr_scale"] <= 1 and isinstance(events, list)):
        raise CheckpointError(f"{path}: bad guard state in the resume metadata")
    ckpt_io.check_input_shape(path, input_shape)
    centers = ckpt_io.check_centers(path, tensors.pop("centers", None), None, saved.feature_dim)
    ckpt_io.check_finite(path, {**tensors, "centers": centers})
    model_state = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    check_weights(saved, centers.shape[0], input_shape, model_state, path)
    progress = EpochProgress(epoch, batch, tensors.get("loss_sums"), guard_events=events)
    sums = progress.loss_sums
    if (batch > 0) != (sums is not None) or (sums is not None and sums.shape != (2,)):
        raise CheckpointError(f"{path}: 'loss_sums' must be 2 numbers exactly when an epoch is "
                              f"under way")
    if "rng.cpu" not in tensors:
        raise CheckpointError(f"{path}: no RNG state")
    state: dict[int, dict] = {}
    try:
        for key, value in tensors.items():
            if key.startswith("optimizer."):
                _, index, name = key.split(".", 2)
                state.setdefault(int(index), {})[name] = value
        for index, entries in scalars.items():
            state.setdefault(int(index), {}).update(entries)
    except (ValueError, TypeError, AttributeError) as e:
        raise CheckpointError(f"{path}: bad optimizer state ({e})") from e
    return ResumeState(cfg, progress, history, input_shape, model_state, centers,
                       {"state": state, "param_groups": groups}, tensors["rng.cpu"],
                       tensors.get("rng.cuda"), guard, metadata.get("data_fingerprint", ""))


def restore(state: ResumeState, model: torch.nn.Module, centers: torch.Tensor,
            optimizer: torch.optim.Optimizer, device: torch.device, path: Path) -> None:
    """Put the saved weights, centers, optimizer state and RNG back into a freshly built run."""
    try:
        model.load_state_dict(state.model_state)
        centers.copy_(state.centers)
        optimizer.load_state_dict(state.optimizer_state)
        torch.set_rng_state(state.rng_cpu)
        if state.rng_cuda is not None and device.type == "cuda":
            torch.cuda.set_rng_state(state.rng_cuda, device)
    except (RuntimeError, ValueError, KeyError, TypeError) as e:
        raise CheckpointError(f"{path}: the saved state does not fit this run "
                              f"({str(e).splitlines()[0]})") from e
    p = state.progress
    if p.loss_sums is not None:
        p.loss_sums = p.loss_sums.to(device)
