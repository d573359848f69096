"""`cl export`."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from .app import app, console
from .flags import flag


@app.command()
def export(
    out: Path = typer.Option(..., "--out", "-o", help="ONNX file to write (*.onnx).", show_default=False),
    run: Path = flag("--run", help="Run folder whose model to export."),
    checkpoint: Optional[Path] = flag("--checkpoint"),
    epoch: Optional[int] = flag("--epoch"),
    overwrite: bool = flag("--overwrite"),
) -> None:
    """Write the trained network as ONNX: uint8 images [N, C, H, W] in, (features, logits) out.

    The pixels (0-255) are normalised inside the graph as in training; the batch size is free.
    The file's metadata_props hold the class names, the normalisation, the head and the config.
    For margin heads the logits are s * cos(theta), without the margin (as in cl eval)."""
    from centerloss.export.onnx import export_onnx
    from centerloss.store import checkpoint as ckpt_io
    path = ckpt_io.resolve(run, checkpoint, epoch)
    meta = export_onnx(path, out, overwrite)
    console.print(f"wrote {out} from {path} (epoch {meta['epoch']}); input {meta['input']}")
