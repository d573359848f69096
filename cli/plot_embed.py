"""`cl plot` and `cl embed`."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from centerloss.errors import ClError
from centerloss.options import check_all

from .app import app, console, fail
from .flags import flag


@app.command()
def plot(
    runs: Optional[list[Path]] = typer.Argument(None, help="Run folders to put side by side (with --compare "
                                                "or --roc).",
                                                show_default=False),
    run: Path = flag("--run"),
    epoch: Optional[int] = flag("--epoch", help="Epoch to draw [default: the last]."),
    split: str = flag("--split", default="test", help="test, or train (the sample of training "
                                                       "features kept per epoch)."),
    gif: bool = typer.Option(False, "--gif", help="Animate every epoch on the same axes [RUN/plots/features.gif]."),
    curves: bool = typer.Option(False, "--curves", help="Losses, accuracies and compactness per epoch "
                                "[RUN/plots/curves.png]."),
    compare: bool = typer.Option(False, "--compare", help="One panel per run given as arguments, the same "
                                 "epoch of each (--epoch, else each run's last) [RUN_A/plots/compare.png]."),
    roc: bool = typer.Option(False, "--roc", help="Verification ROC from pairs drawn (seed 0) from the test "
                             "features of --epoch (else the last) of --run, or of each run given as "
                             "arguments, one curve each [RUN/plots/roc.png]."),
    metric: str = flag("--metric", help="--roc: pair score, cosine or euclidean."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="File to write; its extension picks the "
                                       "format (png, pdf, svg, jpg, ...; gif for --gif)."),
    raw: bool = typer.Option(False, "--raw", help="Margin heads: draw the features as learned, not "
                             "normalised onto the unit circle with the class directions."),
    fps: float = flag("--fps"),
) -> None:
    """Draw features of an epoch, a GIF of all epochs, curves, or runs side by side.

    By default the features of one epoch [RUN/plots/epoch_NNN.png]. Reads the run's stored
    feature snapshots, not the data set. Features wider than 2-D are drawn through one PCA
    fitted per run, and the plot says so. A margin head's run (--head sphereface, cosface or
    arcface) is drawn as the head sees it: features normalised onto the unit circle, with rays
    to the class directions; --raw draws the features as learned."""
    from centerloss import plots, snapshots
    from centerloss.runfolder import plot_path
    modes = [name for name, on in (("--gif", gif), ("--curves", curves), ("--compare", compare),
                                                 ("--roc", roc)) if on]
    if len(modes) > 1:
        fail(f"{' and '.join(modes)} exclude each other; give one", 2)
    if runs and not (compare or roc):
        fail("run folders as arguments are for --compare or --roc; to draw one run use --run DIR", 2)
    if epoch is not None and (gif or curves):
        fail(f"--epoch does not apply to {modes[0]}, which draws every epoch", 2)
    if compare and not runs:
        fail("--compare needs the run folders as arguments: cl plot --compare RUN_A RUN_B", 2)
    check_all(metric=metric, fps=fps, epoch=epoch, split=split)
    try:
        if out is not None and not gif:
            plots.check_format(out)     # before any work, so a bad name fails at once
        if roc:
            from centerloss import roc as roc_mod
            targets = runs or [run]
            curves = roc_mod.snapshot_curves(targets, epoch, metric)
            path = roc_mod.save_roc(out or plot_path(targets[0], "roc.png"), curves,
                                    f"verification ROC, {metric} score, 6000 test pairs")
        elif compare:
            epochs = [epoch if epoch is not None else snapshots.snapshot_epochs(r)[-1] for r in runs]
            views = [snapshots.load_run(r, split, [e], raw) for r, e in zip(runs, epochs)]
            fig = plots.compare_figure(views, epochs, [str(r) for r in runs])
            path = plots.save_figure(fig, out or plot_path(runs[0], "compare.png"))
        elif curves:
            path = plots.save_figure(plots.curves_figure(run), out or plot_path(run, "curves.png"))
        elif gif:
            path = plots.write_gif(snapshots.load_run(run, split, raw=raw), out or plot_path(run, "features.gif"), fps)
        else:
            view = snapshots.load_run(run, split, raw=raw)
            chosen = view.last_epoch if epoch is None else epoch
            path = plots.save_figure(plots.epoch_figure(view, chosen),
                                     out or plot_path(run, f"epoch_{chosen:03d}.png"))
    except ClError as e:       # found while working: exit 1, whatever the kind
        fail(str(e))
    console.print(f"wrote {path}")


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
    overwrite: bool = flag("--overwrite"),
) -> None:
    from centerloss import checkpoint as ckpt_io
    from centerloss import embed as embed_mod
    from centerloss.runtime import Runtime
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
                                         invert="auto" if auto_invert else invert, runtime=runtime)
        else:
            emb = embed_mod.embed_split(path, split or "test", str(data_dir) if data_dir else None,
                                        batch_size=batch_size, runtime=runtime)
        embed_mod.write_embedding(emb, out, overwrite)
    except ClError as e:       # found while working: exit 1, whatever the kind
        fail(str(e))
    n, d = emb.features.shape
    images_n = f"{n:,} image{'' if n == 1 else 's'}"
    what = images_n if use_images else f"the {emb.info['split']} split ({images_n})"
    flipped = sum(json.loads(emb.info.get("inverted", "[]")))
    note = f"; inverted {flipped} of {images_n} (light border)" if auto_invert else ""
    console.print(f"wrote {out}: {d}-D features of {what}, {path} epoch {emb.info['epoch']}{note}")
