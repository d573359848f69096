"""The optimizer of the recipe (config/recipe.py): SGD with Nesterov momentum."""
from __future__ import annotations

import torch

from centerloss.config import Config
from centerloss.config.recipe import peak_lr
from centerloss.device import accel


def make_optimizer(model: torch.nn.Module, cfg: Config) -> torch.optim.Optimizer:
    """SGD with Nesterov momentum; weight decay on conv and linear weights only (not on biases,
    BatchNorm or PReLU slopes, which decay would push towards ReLU)."""
    decay = [p for p in model.parameters() if p.ndim >= 2]
    rest = [p for p in model.parameters() if p.ndim < 2]
    fused = accel.fused_optimizer(next(model.parameters()).device)
    return torch.optim.SGD([{"params": decay, "weight_decay": cfg.weight_decay},
                            {"params": rest, "weight_decay": 0.0}],
                           lr=peak_lr(cfg), momentum=cfg.momentum, nesterov=True, fused=fused)
