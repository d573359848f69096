"""A model's BatchNorm + activation pairs as blocks of their own, for torch.compile to compile one
by one (`compile: blocks`).

Compiled whole, LeNets++ costs ~30 s of compiling on a 2-core CPU before its first step; its
convolutions run the same oneDNN kernels either way, and what compiling buys is the fused
elementwise work around them. Compiling only each BatchNorm with the activation after it gets
most of that (a step 21% shorter than eager, against 28% for the whole model, since the eager
PReLU got its own backward) from three small graphs, one per shape, built in ~18 s
(docs/performance.md): what pays on a run too short to repay the whole compile."""
from __future__ import annotations

import copy
from collections.abc import Callable

from torch import nn

ACTIVATIONS = (nn.PReLU, nn.ReLU)


class NormAct(nn.Module):
    """norm then act: the same modules (and parameters) as the pair it stands for."""

    def __init__(self, norm: nn.Module, act: nn.Module) -> None:
        super().__init__()
        self.norm = norm
        self.act = act

    def forward(self, x):
        return self.act(self.norm(x))


def _pair(a: nn.Module, b: nn.Module) -> bool:
    return isinstance(a, nn.BatchNorm2d) and isinstance(b, ACTIVATIONS)


def adjacent(model: nn.Module, test: Callable[[nn.Module, nn.Module], bool]
             ) -> list[tuple[nn.Sequential, int]]:
    """(seq, i) for each two modules seq[i], seq[i + 1] next to each other in one of model's
    Sequentials for which test holds: the pairs this module compiles as blocks, and those
    fold.py folds."""
    return [(seq, i) for seq in model.modules() if isinstance(seq, nn.Sequential)
            for i in range(len(seq) - 1) if test(seq[i], seq[i + 1])]


def count(model: nn.Module) -> int:
    """How many BatchNorm2d + activation pairs follow each other directly in model's Sequentials."""
    return len(adjacent(model, _pair))


def with_blocks(model: nn.Module, wrap: Callable[[NormAct], nn.Module]) -> nn.Module:
    """A view of model in which each BatchNorm2d directly followed by an activation inside an
    nn.Sequential runs as wrap(NormAct(norm, act)). The view holds model's own modules, so it
    trains the same parameters and buffers; model itself is left as it is (what is evaluated,
    saved and exported). Modules without such a pair are shared, not copied."""
    children = {name: with_blocks(child, wrap) for name, child in model.named_children()}
    if isinstance(model, nn.Sequential):
        items, old, i = [], list(children.values()), 0
        while i < len(old):
            if i + 1 < len(old) and _pair(old[i], old[i + 1]):
                items.append(wrap(NormAct(old[i], old[i + 1])))
                i += 2
            else:
                items.append(old[i])
                i += 1
        return model if len(items) == len(old) and all(
            a is b for a, b in zip(items, model)) else nn.Sequential(*items)
    if all(children[name] is child for name, child in model.named_children()):
        return model
    view = copy.copy(model)             # the same parameters, buffers and forward; its own children
    view._modules = dict(model._modules)
    view._modules.update(children)
    return view
