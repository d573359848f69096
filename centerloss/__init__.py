"""cl: deep features with softmax + center loss (Wen et al., ECCV 2016)."""
from __future__ import annotations

import importlib
from typing import Any

from centerloss.config import Config

__all__ = ["CenterLoss", "Config", "LeNetsPP", "SeedNet", "build_model", "load"]
__version__ = "0.1.0"

# The torch-backed names load on first use (PEP 562), so that importing a torch-free module of the
# package, as `cl --help` does, does not import torch (about a second and a half).
_LAZY = {"CenterLoss": ".model.center_loss", "LeNetsPP": ".model.nets", "SeedNet": ".model.nets",
         "build_model": ".model.nets", "load": ".trained"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
