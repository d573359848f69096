"""The idx files of the MNIST family (LeCun's format: a magic number, big-endian sizes, raw bytes)."""
from __future__ import annotations

import math
import struct
from pathlib import Path

import torch

from .errors import DataError

IDX_UBYTE = 0x08      # the idx type code of unsigned bytes, the only one these data sets use


def read_idx(path: Path, ndim: int) -> torch.Tensor:
    """An idx file of unsigned bytes with ndim dimensions, as a uint8 tensor.

    Read here rather than through torchvision's dataset classes: importing torchvision took 2 to
    4 s of every `cl train` on a 2-core CPU, longer than reading the files."""
    with open(path, "rb") as f:
        header = f.read(4)
        if len(header) < 4 or header[:2] != b"\0\0" or header[2] != IDX_UBYTE or header[3] != ndim:
            raise ValueError(f"not an idx file of {ndim}-D unsigned bytes (it starts "
                             f"{header.hex() or 'empty'})")
        dims = f.read(4 * ndim)
        if len(dims) < 4 * ndim:
            raise ValueError("it ends inside its header")
        shape = struct.unpack(f">{ndim}I", dims)
        data = bytearray(math.prod(shape))
        got = f.readinto(data)
        if got != len(data) or f.read(1):
            raise ValueError(f"it holds {'fewer' if got < len(data) else 'more'} bytes than its "
                             f"header's {' x '.join(map(str, shape))}")
    if not data:            # frombuffer refuses an empty buffer
        return torch.zeros(shape, dtype=torch.uint8)
    return torch.frombuffer(data, dtype=torch.uint8).view(shape)


def read_idx_file(name: str, path: Path, ndim: int) -> torch.Tensor:
    """read_idx, with what goes wrong as a DataError that names the data set, the file and why."""
    try:
        return read_idx(path, ndim)
    except (OSError, ValueError) as e:  # a truncated or corrupt idx file
        raise DataError(f"{name}: {path} cannot be read ({getattr(e, 'strerror', None) or e}); "
                        f"delete it and fetch it again") from e
