"""cl export: the ONNX file runs in onnxruntime and matches the PyTorch forward."""
import json

import numpy as np
import onnx
import onnxruntime as ort  # the `test` extra
import pytest
import torch
from support.runs import quick_config
from typer.testing import CliRunner

from centerloss.data.batches import normalize
from centerloss.model.build import build_from_checkpoint
from centerloss.store import checkpoint as ckpt_io
from centerloss.train.loop import train
from cli.main import app


@pytest.fixture(scope="module")
def arcface_run(idx_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "arc"
    train(quick_config(idx_root, epochs=1, head="arcface", margin=0.2, scale=16.0), out)
    return out


def check_matches(run, onnx_path):
    ckpt = ckpt_io.load_checkpoint(run / "model.safetensors")
    model = build_from_checkpoint(ckpt).eval()
    images = torch.randint(0, 256, (5, 28, 28), dtype=torch.uint8)   # 5: not the traced batch of 2
    with torch.no_grad():
        features, logits = model(normalize(images, ckpt.normalization["mean"], ckpt.normalization["std"]))
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got_f, got_z = session.run(["features", "logits"], {"images": images.numpy()[:, None]})
    np.testing.assert_allclose(got_f, features.numpy(), atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(got_z, logits.numpy(), atol=1e-4, rtol=1e-4)
    assert session.get_inputs()[0].type == "tensor(uint8)"
    meta = session.get_modelmeta().custom_metadata_map
    assert json.loads(meta["classes"]) == ckpt.classes
    assert json.loads(meta["normalization"])["mean"] == ckpt.normalization["mean"]
    return meta


def test_export_runs_in_onnxruntime_like_pytorch(runs, arcface_run, tmp_path):
    cli = CliRunner()
    for run, head in ((runs["flat"], "softmax"), (arcface_run, "arcface")):
        out = tmp_path / f"{head}.onnx"
        result = cli.invoke(app, ["export", "--run", str(run), "-o", str(out)])
        assert result.exit_code == 0, result.output
        assert check_matches(run, out)["head"] == head
        ops = {node.op_type for node in onnx.load(str(out)).graph.node}
        # the graph is the model's own: no pad of its one-channel input (nets.Conv2d's CPU speed-up)
        # and ONNX's MaxPool, not the four slices the compiled training pools with
        assert {"Conv", "MaxPool"} <= ops and not ops & {"Pad", "Slice", "Max"}


def test_existing_file_is_kept_unless_overwrite(runs, tmp_path):
    cli = CliRunner()
    out = tmp_path / "model.onnx"
    out.write_bytes(b"mine")
    result = cli.invoke(app, ["export", "--run", str(runs["flat"]), "-o", str(out)])
    assert result.exit_code == 1 and "--overwrite" in result.output and "Traceback" not in result.output
    assert out.read_bytes() == b"mine"
    bad = cli.invoke(app, ["export", "--run", str(runs["flat"]), "-o", str(tmp_path / "model.txt")])
    assert bad.exit_code == 1 and "*.onnx" in bad.output
    result = cli.invoke(app, ["export", "--run", str(runs["flat"]), "-o", str(out), "--overwrite"])
    assert result.exit_code == 0
    assert onnx.load(str(out)).graph.input[0].name == "images"
