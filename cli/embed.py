"""`cl embed`."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from centerloss.config.options import check_all
from centerloss.errors import ClError

from .app import app, console, fail
from .flags import flag

EMBED_HELP = """Write the features of a split or of image files: .safetensors, .npy or .csv.

A whole split of the model's data set, or image files and folders of images (converted to
the model's channels, resized to its input and normalised as its training data was). The output's
extension picks the format:

\b
  .safetensors  tensors features [N,D] f32, logits [N,C] f32, predicted [N] i64,
                nearest_center [N] i64, center_distance [N] f32, labels [N] i64 (a split
                only), centers [C,D] f32; metadata: classes, sources (image paths), checkpoint,
                epoch, dataset, split.
  .npy          one structured array of N records with fields features, logits, predicted,
                nearest_center, center_distance, label (a split only), path (images only);
                np.load(file) reads it without allow_pickle, e.g. np.load(file)["features"].
  .csv          a header, then one row per sample: index or path, label and label_name (a
                split only), predicted, predicted_name, nearest_center, center_distance,
                f0..f{D-1}, logit0..logit{C-1}; floats to 9 digits (exact float32).

The logits are written for models of up to 1,000 classes; --logits or --no-logits decides
otherwise.
"""


@app.command(help=EMBED_HELP)
def embed(
    images: Optional[list[Path]] = typer.Argument(None, help="Image files or folders (with --images).",
                                                  show_default=False),
    out: Path = typer.Option(..., "--out", "-o", help="File to write: .safetensors, .npy or .csv.",
                             show_default=False),
    use_images: bool = typer.Option(False, "--images", help="Embed the image files and folders given as "
                                    "arguments instead of a split."),
    split: Optional[str] = flag("--split"),
    run: Path = flag("--run", help="Run folder whose model to use."),
    checkpoint: Optional[Path] = flag("--checkpoint"),
    epoch: Optional[int] = flag("--epoch"),
    invert: bool = typer.Option(False, help="Invert every image first: dark drawings on a light "
                                "background become light on dark, like MNIST."),
    auto_invert: bool = typer.Option(False, "--auto-invert", help="Invert only the images whose "
                                     "border is light (a drawing on paper); keep the others."),
    data_dir: Optional[Path] = flag("--data-dir", help="Folder with the raw idx files [default: as trained]."),
    device: str = flag("--device"),
    # fp32 here, not the table's auto: a feature file should match a plain forward pass
    precision: str = flag("--precision", default="fp32",
                          help="fp32 (matches a plain forward pass), bf16 or auto."),
    batch_size: Optional[int] = flag("--batch-size", default=None, help="Images per forward pass "
                                     "[default: 2048 on a GPU; 128 on the CPU]."),
    logits: Optional[bool] = typer.Option(None, "--logits/--no-logits", show_default=False,
                                          help="Write the logits, or leave them out [default: "
                                          "written up to 1,000 classes]."),
    overwrite: bool = flag("--overwrite"),
) -> None:
    from centerloss.device.runtime import Runtime
    from centerloss.export import embed as embed_mod
    from centerloss.store import checkpoint as ckpt_io
    if images and not use_images:
        fail("image paths given as arguments need --images: cl embed --images PATH ... -o FILE", 2)
    if use_images and not images:
        fail("--images needs at least one image file or folder: cl embed --images PATH ... -o FILE", 2)
    if use_images and split is not None:
        fail("--split and --images exclude each other: embed a split or image files", 2)
    if (invert or auto_invert) and not use_images:
        fail(f"--{'auto-' if auto_invert else ''}invert applies to --images only", 2)
    if invert and auto_invert:
        fail("--invert inverts every image and --auto-invert chooses per image; pass one", 2)
    check_all(batch_size=batch_size, epoch=epoch, split=split)
    runtime = Runtime.resolve(device, precision)
    try:
        embed_mod.check_output(out, overwrite)
        path = ckpt_io.resolve(run, checkpoint, epoch)
        if use_images:
            emb = embed_mod.embed_images(path, images, batch_size=batch_size,
                                         invert="auto" if auto_invert else invert, runtime=runtime,
                                         logits=logits)
        else:
            emb = embed_mod.embed_split(path, split or "test", str(data_dir) if data_dir else None,
                                        batch_size=batch_size, runtime=runtime, logits=logits)
        embed_mod.write_embedding(emb, out, overwrite)
    except ClError as e:       # found while working: exit 1, whatever the kind
        fail(str(e))
    n, d = emb.features.shape
    images_n = f"{n:,} image{'' if n == 1 else 's'}"
    what = images_n if use_images else f"the {emb.info['split']} split ({images_n})"
    flipped = sum(json.loads(emb.info.get("inverted", "[]")))
    note = f"; inverted {flipped} of {images_n} (light border)" if auto_invert else ""
    console.print(f"wrote {out}: {d}-D features of {what}, {path} epoch {emb.info['epoch']}{note}")
    if emb.logits is None and logits is None:
        console.print(f"left out the logits: {len(emb.classes):,} classes (more than "
                      f"{embed_mod.LOGITS_UP_TO_CLASSES:,}) would take {n * len(emb.classes) * 4 / 1e6:,.0f} "
                      f"MB; --logits writes them")
