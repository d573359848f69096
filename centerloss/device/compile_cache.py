"""Whether inductor's cache already holds a model compiled as this run would compile it.

Compiling LeNets++ takes ~30 s with an empty cache and ~3 s once inductor's cache folder holds
the compiled graphs (docs/performance.md): a run of the same model, batch, precision and threads
on this machine, with the same torch and the same model code, compiled it before. inductor keys
its cache by the traced graph, which is known only after tracing; the compile rule has to decide
before. So after each compile, cl leaves a marker in inductor's cache folder named after what
decides the graph, and the rule reads the cheaper cost where it finds one. The marker lives and
goes with the cache it speaks for (a cleared /tmp, another TORCHINDUCTOR_CACHE_DIR). If it is
wrong, say after an upgrade of the C++ compiler, a run compiles as long as a first one; nothing
but the time depends on it.
"""
from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

import centerloss
from centerloss.device.runtime import Runtime

MODEL_CODE = Path(__file__).resolve().parent.parent / "model"   # the code that decides the graph


def graph_key(model: nn.Module, batch_size: int, input_shape: Sequence[int], runtime: Runtime,
              world: int = 1, blocks: bool = False) -> str:
    """A name for the graphs torch.compile makes of model at this batch (per process), compiled
    whole or in blocks (model/blocks.py)."""
    h = hashlib.sha256()
    for part in (torch.__version__, centerloss.__version__, repr(model), batch_size,
                 tuple(input_shape), runtime.device.type, runtime.precision,
                 torch.get_num_threads(), world, *(["blocks"] if blocks else [])):
        h.update(f"{part}\n".encode())
    for source in sorted(MODEL_CODE.glob("*.py")):
        h.update(source.read_bytes())
    return h.hexdigest()[:32]


def _marker(key: str) -> Path:
    from torch._inductor.runtime.cache_dir_utils import cache_dir  # imports inductor: ~0.3 s
    return Path(cache_dir()) / "centerloss" / f"{key}.compiled"


def holds(key: str) -> bool:
    """Whether a run compiled this graph before, under this inductor cache, with its FX graph
    cache on (TORCHINDUCTOR_FX_GRAPH_CACHE=0 turns it off)."""
    from torch._inductor import config
    try:
        return bool(config.fx_graph_cache) and _marker(key).is_file()
    except OSError:
        return False


def remember(key: str) -> None:
    """Leave the marker; a cache folder cl cannot write to only costs the next run the time."""
    try:
        path = _marker(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.touch()
    except OSError:
        pass
