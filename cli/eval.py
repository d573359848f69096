"""`cl eval`."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich import box
from rich.table import Table
from rich.text import Text

from centerloss.config.limits import tidy_json
from centerloss.config.options import check_all
from centerloss.errors import ClError

from .app import app, console, fail
from .flags import flag

MAX_CONFUSION_CLASSES = 30   # a wider confusion table does not fit a terminal


@app.command("eval")
def evaluate(
    run: Path = flag("--run"),
    checkpoint: Optional[Path] = flag("--checkpoint"),
    epoch: Optional[int] = flag("--epoch", help="Epoch of the run to evaluate [default: the latest]."),
    data_dir: Optional[Path] = flag("--data-dir", help="Folder with the data set's files [default: as trained]."),
    device: str = flag("--device"),
    precision: str = flag("--precision"),
    as_json: bool = typer.Option(False, "--json", help="Print the metrics as JSON on stdout."),
    verify: bool = typer.Option(False, "--verify", help="Add verification on pairs drawn from the test split."),
    pairs: Optional[Path] = typer.Option(None, help="Verify on the image pairs of this file instead: "
                                                    "'path_a path_b same' lines, or LFW's pairs.txt."),
    images_dir: Optional[Path] = typer.Option(None, help="Where the paths of --pairs start [default: the file's "
                                                         "folder; for LFW, its lfw_funneled or lfw subfolder]."),
    metric: str = flag("--metric"),
    num_pairs: int = flag("--num-pairs"),
    pair_seed: int = flag("--pair-seed"),
    folds: int = flag("--folds"),
    reference: str = typer.Option("test", help="What the test images are ranked against for the "
                                  "retrieval figures: test (each against all the other test images) "
                                  "or train (a gallery of the training images' features)."),
) -> None:
    """Measure a trained model on the test split, or verify pairs of images with it."""
    from centerloss.device.runtime import Runtime
    from centerloss.evaluation.evaluate import evaluate_checkpoint
    from centerloss.store import checkpoint as ckpt_io

    from .render import plural, print_verification
    check_all(metric=metric)
    if pairs is not None and verify:
        fail("--verify draws pairs from the test split and --pairs reads them from a file; "
             "pass one of them", 2)
    if images_dir is not None and pairs is None:
        fail("--images-dir is where the paths of --pairs start; pass --pairs too", 2)
    check_all(num_pairs=num_pairs, folds=folds, pair_seed=pair_seed, epoch=epoch)
    if reference not in ("test", "train"):
        fail(f"--reference must be test or train, got {reference!r}", 2)
    if pairs is not None and reference != "test":
        fail("--reference ranks the test split; --pairs verifies the pairs of a file; pass one of them", 2)
    runtime = Runtime.resolve(device, precision)
    path = ckpt_io.resolve(run, checkpoint, epoch)
    try:
        if pairs is not None:
            from centerloss.evaluation.pairs import evaluate_pairs
            report, _ = evaluate_pairs(path, pairs, images_dir, metric, folds, runtime=runtime)
        else:
            report = evaluate_checkpoint(path, data_dir=str(data_dir) if data_dir else None,
                                         runtime=runtime, verify_pairs=num_pairs if verify else 0, pair_seed=pair_seed,
                                         metric=metric, folds=folds, reference=reference)
    except ClError as e:       # the work is done, so a bad value found now is not a usage error
        fail(str(e))
    if as_json:
        console.out(json.dumps(tidy_json(report), indent=2), highlight=False)
        return
    if pairs is not None:
        console.print(f"{path}: {report['model']}, epoch {report['epoch']}, on "
                      f"{plural(report['images'], 'image', 'images')} of {pairs}")
        print_verification(console, report["verification"], f"{metric} scores of the pairs in {pairs.name}")
        return
    head = report["head"] if report["head"] == "softmax" else \
        f"{report['head']} (m {report['margin']:g}, s {report['scale']:g})"
    console.print(f"{path}: {report['model']} on {report['dataset']} test split, "
                  f"epoch {report['epoch']}, {head}, lambda {report['lambda']:g}")
    summary = Table(show_header=False, box=None)
    for label, key, fmt in (("accuracy (softmax)", "accuracy", "{:.2%}"),
                            ("accuracy (nearest center)", "nearest_center_accuracy", "{:.2%}"),
                            ("mean distance to own center", "intra_distance", "{:.4f}"),
                            ("mean distance between centers", "inter_distance", "{:.4f}"),
                            ("compactness (intra / inter)", "compactness", "{:.4f}"),
                            ("angular compactness (by angle)", "angular_compactness", "{:.4f}")):
        summary.add_row(label, fmt.format(report[key]))
    console.print(summary)
    print_retrieval(report["retrieval"])
    if "per_class_accuracy" not in report:
        print_most_confused(report)
    elif report["classes"] > MAX_CONFUSION_CLASSES:
        console.print(f"confusion: {report['classes']} classes, too many for a table; see --json")
    else:
        print_confusion(report, list(report["per_class_accuracy"]))
    if "verification" in report:
        where = ("the test split" if report["verification"]["pairs_from"] == "test" else
                 "test images and test or train images")
        print_verification(console, report["verification"], f"{metric} scores of pairs drawn from "
                                                            f"{where} (seed {pair_seed})")


def print_retrieval(r: dict) -> None:
    queried = ("each test image against the other test images" if r["reference"] != "train"
               else "the test images against the train images")
    console.print(f"retrieval: {r['distance']} distance, {queried} "
                  f"({r['queries']:,} queries" + (f"; {r['lone_queries']:,} without another image of "
                                                  f"their class left out" if r["lone_queries"] else "")
                  + ")", highlight=False, markup=False)
    table = Table(show_header=False, box=None)
    for label, key in (("precision at 1", "precision_at_1"), ("R-precision", "r_precision"),
                       ("MAP at R", "mean_average_precision_at_r"),
                       ("NMI (k-means of the test features)", "nmi"), ("AMI", "ami")):
        table.add_row(label, "n/a (no query has another image of its class; try --reference train)"
                      if r[key] is None else f"{r[key]:.4f}")
    console.print(table)


def print_most_confused(report: dict) -> None:
    pairs = report["most_confused"]
    console.print(f"confusion: {report['classes']:,} classes, more than a matrix worth reading; "
                  f"the {len(pairs)} most frequent mistakes:")
    table = Table(box=box.SIMPLE_HEAD, padding=(0, 1))
    for column in ("true", "predicted", "images"):
        table.add_column(column, justify="right" if column == "images" else "left")
    for p in pairs:
        table.add_row(Text(p["true"]), Text(p["predicted"]), str(p["count"]))   # names are not markup
    console.print(table)


def print_confusion(report: dict, classes: list[str]) -> None:
    # a light box and unwrapped names keep ten classes readable in 80 columns
    table = Table(title="confusion (rows: true, columns: predicted)", box=box.SIMPLE_HEAD,
                  padding=(0, 1), title_justify="left")
    table.add_column("class", no_wrap=True)
    table.add_column("acc", justify="right", no_wrap=True)
    for i in range(len(classes)):
        table.add_column(str(i), justify="right", no_wrap=True)
    for i, name in enumerate(classes):
        table.add_row(name if name == str(i) else f"{i} {name}",   # MNIST's names are its indices
                      f"{report['per_class_accuracy'][name]:.1%}",
                      *(str(v) for v in report["confusion"][i]))
    console.print(table)
