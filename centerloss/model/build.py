"""A saved model back as a module: its weights checked against the model its config describes
before anything of that size is built."""
from __future__ import annotations

from pathlib import Path

import torch

from centerloss.config import Config
from centerloss.errors import CheckpointError
from centerloss.model.nets import build_model_for
from centerloss.store import retention
from centerloss.store.checkpoint import Checkpoint


def check_weights(config: Config, num_classes: int, input_shape: list[int],
                  state: dict[str, torch.Tensor], path: Path | str) -> None:
    """CheckpointError unless state holds exactly the weights of the model config describes.

    The model is built on the meta device, shapes only: the weights in the file bound the size
    of the model we then build, so a forged config cannot make us allocate a giant one."""
    with torch.device("meta"):
        expected = build_model_for(config, num_classes, input_shape).state_dict()
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing or extra:
        raise CheckpointError(f"{path}: weights do not match a {config.model} model "
                              f"(missing {missing[:3]}, unexpected {extra[:3]})")
    for k, v in expected.items():
        if v.shape != state[k].shape:
            raise CheckpointError(f"{path}: {k} has shape {tuple(state[k].shape)}, "
                                  f"a {config.model} model with feature dim "
                                  f"{config.feature_dim} needs {tuple(v.shape)}")


def build_from_checkpoint(ckpt: Checkpoint, path: Path | str = "checkpoint") -> torch.nn.Module:
    """The model of a checkpoint with its weights, or a CheckpointError if they do not fit."""
    check_weights(ckpt.config, len(ckpt.classes), ckpt.input_shape, ckpt.model_state, path)
    model = build_model_for(ckpt.config, len(ckpt.classes), ckpt.input_shape)
    model.load_state_dict(ckpt.model_state)
    return model


def checkpoint_size(config: Config, num_classes: int, input_shape: list[int]) -> int:
    """An upper bound of the size of one checkpoint of this model on disk, in bytes, from the
    model built on the meta device (shapes only: nothing of that size is allocated)."""
    with torch.device("meta"):
        state = build_model_for(config, num_classes, input_shape).state_dict()
    tensor_bytes = sum(v.numel() * v.element_size() for v in state.values())
    tensor_bytes += num_classes * config.feature_dim * 4            # the centers, fp32
    return retention.checkpoint_bytes(tensor_bytes, len(state) + 1, num_classes)
