"""README's Python blocks run as written: a reader who pastes one gets no NameError."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)


def test_readme_has_python_blocks():
    assert BLOCKS, "README.md lost its ```python blocks, or this test's pattern no longer finds them"


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i + 1}" for i in range(len(BLOCKS))])
def test_readme_python_block_runs(code, tmp_path, monkeypatch, runs):
    monkeypatch.chdir(tmp_path)          # whatever a block writes lands here
    if 'load("params")' in code:         # the block that opens a run: the session's trained one
        shutil.copytree(runs["flat"], tmp_path / "params")
    if "model.onnx" in code:             # the block that runs an export: `cl export` it first
        from centerloss.export.onnx import export_onnx
        export_onnx(runs["flat"] / "model.safetensors", tmp_path / "model.onnx")
    exec(compile(code, "README.md python block", "exec"), {"__name__": "readme"})
