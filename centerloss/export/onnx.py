"""A trained model as an ONNX file: uint8 images in, (features, logits) out.

The graph takes the raw uint8 pixels, [N, C, H, W] (N free), and normalises them inside, as
cl's training did: (pixel - 255 * mean) / (255 * std) per channel. A caller outside Python
then needs no statistics of ours to get the same numbers as `cl embed`. The file's
metadata_props say so, and carry the class names, the normalisation, the head and the config."""
from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path

import torch
from torch import nn

from centerloss.data.registry import normalization_of
from centerloss.errors import ExportError
from centerloss.model.build import build_from_checkpoint
from centerloss.store import checkpoint as ckpt_io
from centerloss.store.files import atomic_write, check_output as check_output_path

INPUT = "images"
OUTPUTS = ("features", "logits")
OPSET = 18


class UInt8Input(nn.Module):
    """The model behind its own normalisation: uint8 [N, C, H, W] -> (features, logits)."""

    def __init__(self, model: nn.Module, mean: list[float], std: list[float]):
        super().__init__()
        self.model = model
        self.register_buffer("shift", torch.tensor([255.0 * m for m in mean]).view(1, -1, 1, 1))
        self.register_buffer("scale", torch.tensor([255.0 * s for s in std]).view(1, -1, 1, 1))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model((images.float() - self.shift) / self.scale)


def metadata(ckpt: ckpt_io.Checkpoint, mean: list[float], std: list[float]) -> dict[str, str]:
    c, h, w = ckpt.input_shape
    return {
        "input": f"{INPUT}: uint8 [N, {c}, {h}, {w}] pixels 0-255, NCHW; normalised inside the graph",
        "outputs": "features [N, D] float32, logits [N, classes] float32",
        "normalization": json.dumps({"mean": mean, "std": std,
                                     "applied": "(pixel - 255 * mean) / (255 * std), in the graph"}),
        "classes": json.dumps(list(ckpt.classes)),
        "head": ckpt.config.head,
        "logits": ("x @ W.T" if ckpt.config.head == "softmax" else
                   f"{ckpt.config.scale:g} * cos(feature, class weight), no margin"),
        "config": ckpt.config.to_json(),
        "epoch": str(ckpt.epoch),
        "dataset": ckpt.config.dataset,
        "producer": "cl export",
    }


def check_output(path: Path | str, overwrite: bool) -> None:
    path = Path(path)
    if path.suffix.lower() != ".onnx":
        raise ExportError(f"{path}: name the output *.onnx")
    check_output_path(path, overwrite)


def export_onnx(checkpoint: Path | str, out: Path | str, overwrite: bool = False) -> dict[str, str]:
    """Write the checkpoint's model to `out` as ONNX (atomically); return the metadata written."""
    check_output(out, overwrite)
    ckpt = ckpt_io.load_checkpoint(Path(checkpoint))
    model = build_from_checkpoint(ckpt, checkpoint).eval()
    mean, std = normalization_of(ckpt)
    net = UInt8Input(model, mean, std).eval()
    c, h, w = ckpt.input_shape
    example = torch.randint(0, 256, (2, c, h, w), dtype=torch.uint8)
    try:
        import onnx  # the exporter needs onnx and onnxscript; imported here so other commands do not
    except ImportError as e:
        raise ExportError(f"cl export needs the onnx and onnxscript packages: pip install onnx onnxscript "
                          f"({e})") from e
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        program = torch.onnx.export(net, (example,), input_names=[INPUT], output_names=list(OUTPUTS),
                                    dynamic_shapes={INPUT: {0: torch.export.Dim("batch")}},
                                    opset_version=OPSET, dynamo=True, verbose=False)
    proto = program.model_proto
    meta = metadata(ckpt, mean, std)
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.checker.check_model(proto)
    atomic_write(Path(out), proto.SerializeToString(), exclusive=not overwrite)
    return meta
