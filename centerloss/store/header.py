"""Checks a safetensors file's header ourselves before the library reads it.

A safetensors file is an 8-byte little-endian header length, a JSON header, then the raw bytes
of the tensors. The safetensors library checks much of this too, but a file from a stranger
should get one clear line naming what is wrong, and must never make us allocate more than the
file holds; checking here first makes both true whatever version of the library is installed.
"""
from __future__ import annotations

import json
import os
import struct
from pathlib import Path

from centerloss.errors import HeaderError

# Byte sizes of the dtypes cl can read back into torch; anything else is refused by name.
DTYPE_SIZES = {"BOOL": 1, "U8": 1, "I8": 1, "I16": 2, "F16": 2, "BF16": 2, "I32": 4, "F32": 4,
               "I64": 8, "F64": 8}
# cl's own headers are a few kilobytes (config, metrics, history as JSON); 16 MiB leaves room for
# a long history and any tensor list while keeping a crafted length from costing real memory.
MAX_HEADER_BYTES = 16 << 20
MAX_RANK = 8


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict:
    # json.loads keeps the last of two equal keys silently; two tensors of one name are a forgery.
    keys = [k for k, _ in pairs]
    if len(keys) != len(set(keys)):
        dup = sorted({k for k in keys if keys.count(k) > 1})[0]
        raise HeaderError(f"the header names {dup!r} twice")
    return dict(pairs)


def _is_count(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def read_header(path: Path | str) -> tuple[dict[str, dict], dict[str, str]]:
    """({tensor name: {dtype, shape, data_offsets}}, metadata) of a safetensors file, after checking
    that every tensor lies inside the file, where its dtype and shape say, without overlaps or gaps.

    Raises HeaderError (a ValueError) with a one-line reason, or OSError if the file cannot be read."""
    path = Path(path)
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise HeaderError(f"{size} bytes is too short for a safetensors file")
        (length,) = struct.unpack("<Q", head)
        if length > min(size - 8, MAX_HEADER_BYTES):
            raise HeaderError(f"the header claims {length} bytes but the file has {size - 8} after "
                              f"the length (limit {MAX_HEADER_BYTES}); the file is truncated or forged")
        raw = f.read(length)
    try:
        header = json.loads(raw.decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
        raise HeaderError(f"the header is not JSON ({type(e).__name__})") from e
    if not isinstance(header, dict):
        raise HeaderError("the header is not a JSON object")
    metadata = header.pop("__metadata__", {})
    if not isinstance(metadata, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in metadata.items()):
        raise HeaderError("the metadata must map strings to strings")
    data_size = size - 8 - length
    spans = []
    for name, info in header.items():
        spans.append((*_check_entry(name, info), name))
    # The data area must be exactly the tensors laid end to end: no overlap, no hidden bytes.
    end = 0
    for begin, stop, name in sorted(spans):
        if begin != end:
            raise HeaderError(f"tensor {name!r} starts at byte {begin}, expected {end} "
                              f"(tensors overlap or leave a gap)")
        end = stop
    if end != data_size:
        raise HeaderError(f"the tensors cover {end} bytes but the file holds {data_size}; "
                          f"the file is truncated or has trailing data")
    return header, metadata


def _check_entry(name: str, info: object) -> tuple[int, int]:
    """(begin, end) byte offsets of one tensor entry, after checking its dtype and shape."""
    if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
        raise HeaderError(f"tensor {name!r} needs exactly dtype, shape and data_offsets")
    dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
    if dtype not in DTYPE_SIZES:
        raise HeaderError(f"tensor {name!r} has unsupported dtype {dtype!r}; "
                          f"known: {', '.join(DTYPE_SIZES)}")
    if not (isinstance(shape, list) and len(shape) <= MAX_RANK and all(map(_is_count, shape))):
        raise HeaderError(f"tensor {name!r} has a bad shape {str(shape)[:60]} "
                          f"(want up to {MAX_RANK} non-negative integers)")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(map(_is_count, offsets))
            and offsets[0] <= offsets[1]):
        raise HeaderError(f"tensor {name!r} has bad data_offsets {str(offsets)[:60]}")
    nbytes = DTYPE_SIZES[dtype]
    for dim in shape:
        nbytes *= dim
    if nbytes != offsets[1] - offsets[0]:
        raise HeaderError(f"tensor {name!r} of dtype {dtype} and shape {shape} needs {nbytes} "
                          f"bytes but its offsets span {offsets[1] - offsets[0]}")
    return offsets[0], offsets[1]
