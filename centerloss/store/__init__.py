"""The boundary with the file system: the run folder and its lock, checkpoints, safetensors
checks, atomic writes. Every file cl reads or writes goes through here.

The checkpoint names load on first use (PEP 562): runfolder and header are torch-free, and the
CLI reads them before it has decided to import torch."""
from __future__ import annotations

import importlib
from typing import Any

_LAZY = {"Checkpoint": "checkpoint", "load_checkpoint": "checkpoint", "save_checkpoint": "checkpoint",
         "read_tensors": "checkpoint", "save_tensors": "checkpoint", "resolve": "checkpoint",
         "read_history": "checkpoint", "atomic_write": "files"}
__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
