"""`cl plot`."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from centerloss.config.options import check_all
from centerloss.errors import ClError

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
    gif: bool = typer.Option(False, "--gif", help="Animate every epoch on the same axes [RUN/plots/features.gif; "
                             "features_train.gif with --split train]."),
    curves: bool = typer.Option(False, "--curves", help="Losses, accuracies, compactness and the "
                                "learning rate per epoch [RUN/plots/curves.png]."),
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
    overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing file named by "
                                   "--out (the default files in RUN/plots/ are always redrawn)."),
) -> None:
    """Draw features of an epoch, a GIF of all epochs, curves, or runs side by side.

    By default the features of one epoch [RUN/plots/epoch_NNN.png; epoch_NNN_train.png with
    --split train, so the two never overwrite each other]. Reads the run's stored
    feature snapshots, not the data set. Features wider than 2-D are drawn through one PCA
    fitted per run, and the plot says so. A margin head's run (--head sphereface, cosface or
    arcface) is drawn as the head sees it: features normalised onto the unit circle, with rays
    to the class directions; --raw draws the features as learned. A file you name with --out is
    kept if it exists, unless --overwrite; the default files in RUN/plots/ are cl's own and are
    redrawn."""
    from centerloss import plots
    from centerloss.plots import snapshots
    from centerloss.store.files import check_output
    from centerloss.store.runfolder import plot_path
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
    tag = "_train" if split == "train" else ""     # the default names of the two splits differ
    try:
        if out is not None:         # before any work, so a bad name fails at once
            check_output(out, overwrite)        # a file of yours is kept unless --overwrite
            if not gif:
                plots.check_format(out)
        if roc:
            targets = runs or [run]
            curves = plots.snapshot_curves(targets, epoch, metric)
            path = plots.save_roc(out or plot_path(targets[0], "roc.png"), curves,
                                    f"verification ROC, {metric} score, {plots.ROC_PAIRS} test pairs")
        elif compare:
            epochs = [epoch if epoch is not None else snapshots.snapshot_epochs(r)[-1] for r in runs]
            views = [snapshots.load_run(r, split, [e], raw) for r, e in zip(runs, epochs)]
            fig = plots.compare_figure(views, epochs, [str(r) for r in runs])
            path = plots.save_figure(fig, out or plot_path(runs[0], f"compare{tag}.png"))
        elif curves:
            path = plots.save_figure(plots.curves_figure(run), out or plot_path(run, "curves.png"))
        elif gif:
            path = plots.write_gif(snapshots.load_run(run, split, raw=raw), out or plot_path(run, f"features{tag}.gif"), fps)
        else:
            view = snapshots.load_run(run, split, raw=raw)
            chosen = view.last_epoch if epoch is None else epoch
            path = plots.save_figure(plots.epoch_figure(view, chosen),
                                     out or plot_path(run, f"epoch_{chosen:03d}{tag}.png"))
    except ClError as e:       # found while working: exit 1, whatever the kind
        fail(str(e))
    console.print(f"wrote {path}")
