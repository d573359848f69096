"""Crafted safetensors files: each gets a one-line reason from our own header check, never a crash,
a hang or an allocation the size of a forged length."""
from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import save as st_save

from centerloss.errors import CheckpointError
from centerloss.model.build import check_weights
from centerloss.store import checkpoint as ckpt_io
from centerloss.store.header import MAX_HEADER_BYTES, HeaderError, read_header


def forge(path: Path, header: object, data: bytes = b"", length: int | None = None) -> Path:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw) if length is None else length) + raw + data)
    return path


def entry(dtype: str = "F32", shape: list = (2,), offsets: list = (0, 8)) -> dict:
    return {"dtype": dtype, "shape": list(shape), "data_offsets": list(offsets)}


def test_a_file_written_by_safetensors_passes(tmp_path):
    path = tmp_path / "ok.safetensors"
    tensors = {"a": torch.arange(6, dtype=torch.float32).reshape(2, 3),
               "b": torch.tensor([1, 2], dtype=torch.int64), "empty": torch.zeros(0, 4)}
    path.write_bytes(st_save(tensors, metadata={"format": "x", "config": "{}"}))
    header, metadata = read_header(path)
    assert set(header) == {"a", "b", "empty"}
    assert header["a"]["shape"] == [2, 3] and metadata == {"format": "x", "config": "{}"}
    loaded, _ = ckpt_io.read_tensors(path)
    assert torch.equal(loaded["a"], tensors["a"])


CRAFTED = [
    # (case, header, data, forged length, what the message must say)
    ("empty file", None, b"", None, "too short"),
    ("giant length", {"a": entry()}, bytes(8), 1 << 60, "truncated or forged"),
    ("length past the end", {"a": entry()}, bytes(8), 10_000, "truncated or forged"),
    ("header not JSON", b"{not json", b"", None, "not JSON"),
    ("header not UTF-8", b"\xff\xfe{}", b"", None, "not JSON"),
    ("header a list", [1, 2], b"", None, "not a JSON object"),
    ("deep nesting", b"[" * 100_000 + b"]" * 100_000, b"", None, "not JSON"),
    ("unknown dtype", {"a": entry(dtype="F128")}, bytes(8), None, "unsupported dtype"),
    ("object dtype", {"a": entry(dtype="O")}, bytes(8), None, "unsupported dtype"),
    ("negative dim", {"a": entry(shape=[-2])}, bytes(8), None, "bad shape"),
    ("float dim", {"a": entry(shape=[2.0])}, bytes(8), None, "bad shape"),
    ("bool dim", {"a": entry(shape=[True, 2])}, bytes(8), None, "bad shape"),
    ("giant shape", {"a": entry(shape=[1 << 40, 1 << 40])}, bytes(8), None, "needs"),
    ("shape vs offsets", {"a": entry(shape=[3])}, bytes(8), None, "needs 12 bytes"),
    ("offsets reversed", {"a": entry(offsets=[8, 0])}, bytes(8), None, "bad data_offsets"),
    ("offsets past the end", {"a": entry(offsets=[8, 16])}, bytes(8), None, "overlap or leave a gap"),
    ("overlap", {"a": entry(), "b": entry(offsets=[4, 12])}, bytes(12), None, "overlap"),
    ("gap", {"a": entry(offsets=[4, 12])}, bytes(12), None, "gap"),
    ("trailing bytes", {"a": entry()}, bytes(12), None, "trailing data"),
    ("missing bytes", {"a": entry()}, bytes(4), None, "truncated"),
    ("extra key", {"a": {**entry(), "x": 1}}, bytes(8), None, "exactly dtype, shape"),
    ("entry not an object", {"a": [1]}, bytes(8), None, "exactly dtype, shape"),
    ("metadata not strings", {"__metadata__": {"epoch": 3}}, b"", None, "strings to strings"),
    ("metadata a list", {"__metadata__": ["x"]}, b"", None, "strings to strings"),
    ("duplicate names", b'{"a":' + json.dumps(entry()).encode() + b',"a":'
     + json.dumps(entry()).encode() + b"}", bytes(8), None, "twice"),
]


@pytest.mark.parametrize("case,header,data,length,reason", CRAFTED, ids=[c[0] for c in CRAFTED])
def test_crafted_headers_get_a_one_line_reason(tmp_path, case, header, data, length, reason):
    path = tmp_path / "bad.safetensors"
    if header is None:
        path.write_bytes(data)
    else:
        forge(path, header, data, length)
    with pytest.raises(HeaderError, match=reason) as info:
        read_header(path)
    assert "\n" not in str(info.value)
    with pytest.raises(CheckpointError) as info:   # the path every loader takes
        ckpt_io.read_tensors(path)
    assert str(info.value).startswith(f"{path}: not a valid safetensors file")
    assert "\n" not in str(info.value)


def test_header_cap_is_enforced_without_reading_the_header(tmp_path):
    # A length just over the cap is refused even when the file is that long.
    path = forge(tmp_path / "big.safetensors", b" " * 16, bytes(MAX_HEADER_BYTES), MAX_HEADER_BYTES + 1)
    with pytest.raises(HeaderError, match="limit"):
        read_header(path)


def test_a_truncated_checkpoint_is_refused(tmp_path):
    path = tmp_path / "t.safetensors"
    path.write_bytes(st_save({"w": torch.ones(100)}, metadata={"format": ckpt_io.FORMAT}))
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(CheckpointError, match="truncated"):
        ckpt_io.load_checkpoint(path)


def test_forged_config_cannot_make_a_giant_model(tmp_path):
    """The weights in the file, not the config's numbers, bound what gets built."""
    from centerloss.config.config import Config
    cfg = Config(model="seed", feature_dim=1 << 30)      # a 2**30-wide feature layer: terabytes
    state = {"body.0.weight": torch.zeros(32, 1, 3, 3)}
    with pytest.raises(CheckpointError, match="weights do not match"):
        check_weights(cfg, 10, [1, 28, 28], state, tmp_path / "x")
