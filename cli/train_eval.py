"""`cl train` and `cl eval`."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from centerloss import checkpoint as ckpt_io
from centerloss.config import Config

from .app import USER_ERRORS, app, console, fail
from .render import TrainReporter, epoch_line


@app.command()
def train(
    lam: float = typer.Option(0.1, "--lambda", help="Weight of the center loss; 0 trains softmax alone."),
    alpha: float = typer.Option(0.5, help="Center learning rate of Eq. 4, in (0, 1]."),
    epochs: int = typer.Option(Config.epochs, help="Passes over the training split."),
    batch_size: int = typer.Option(Config.batch_size, help="Images per batch."),
    lr: float = typer.Option(Config.lr, help="Peak learning rate (SGD, Nesterov, cosine decay)."),
    model: str = typer.Option("lenetspp", help="lenetspp (the paper's net) or seed (the blog's lighter net)."),
    feature_dim: int = typer.Option(2, help="Size of the feature layer; 2 can be plotted."),
    dataset: str = typer.Option("mnist", help="mnist, fashion-mnist or kmnist."),
    data_dir: Optional[Path] = typer.Option(None, help="Folder with the raw idx files [default: ~/.cache/cl/data]."),
    out: Path = typer.Option(Path("params"), help="Run folder for weights, snapshots and history."),
    device: str = typer.Option("auto", help="auto, cuda, mps or cpu."),
    precision: str = typer.Option("auto", help="auto (bf16 where native), fp32 or bf16."),
    compile_model: bool = typer.Option(False, "--compile", help="torch.compile the model; meant for "
                                       "GPUs (on an AVX2 CPU it measured slower)."),
    seed: int = typer.Option(0, help="Seed of the initial weights, batch order and augmentation."),
    augment: int = typer.Option(Config.augment, help="Random translation in pixels; 0 turns it off."),
    overwrite: bool = typer.Option(False, help="Replace a run already in --out."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the final line."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per epoch on stdout."),
) -> None:
    """Train a CNN with softmax + lambda * center loss and write the run folder."""
    from centerloss.train import train as run_training
    cfg = Config(lam=lam, alpha=alpha, epochs=epochs, batch_size=batch_size, lr=lr, model=model,
                 feature_dim=feature_dim, dataset=dataset, data_dir=str(data_dir or ""),
                 device=device, precision=precision, compile=compile_model, seed=seed, augment=augment)
    try:
        cfg.validate()
    except ValueError as e:
        fail(str(e), 2)
    reporter = TrainReporter(console, quiet=quiet, as_json=as_json)
    try:
        records = run_training(cfg, out, reporter, overwrite=overwrite)
    except USER_ERRORS as e:
        reporter.close()
        fail(str(e))
    last = records[-1]
    if quiet:
        console.print(epoch_line(last, cfg.epochs))
    elif not as_json:
        console.print(f"saved {out / 'model.safetensors'} (epoch {last['epoch']}); "
                      f"next: cl eval --run {out}")


@app.command("eval")
def evaluate(
    run: Path = typer.Option(Path("params"), help="Run folder to read."),
    checkpoint: Optional[Path] = typer.Option(None, help="A checkpoint file; overrides --run and --epoch."),
    epoch: Optional[int] = typer.Option(None, help="Epoch of the run to evaluate [default: the latest]."),
    data_dir: Optional[Path] = typer.Option(None, help="Folder with the raw idx files [default: as trained]."),
    device: str = typer.Option("auto", help="auto, cuda, mps or cpu."),
    as_json: bool = typer.Option(False, "--json", help="Print the metrics as JSON on stdout."),
) -> None:
    """Measure a trained model on the test split."""
    from centerloss.evaluate import evaluate_checkpoint
    try:
        path = ckpt_io.resolve(run, checkpoint, epoch)
        report = evaluate_checkpoint(path, data_dir=str(data_dir) if data_dir else None, device=device)
    except USER_ERRORS as e:
        fail(str(e))
    if as_json:
        print(json.dumps(report, indent=2))
        return
    console.print(f"{path}: {report['model']} on {report['dataset']} test split, "
                  f"epoch {report['epoch']}, lambda {report['lambda']:g}")
    summary = Table(show_header=False, box=None)
    for label, key, fmt in (("accuracy (softmax)", "accuracy", "{:.2%}"),
                            ("accuracy (nearest center)", "nearest_center_accuracy", "{:.2%}"),
                            ("mean distance to own center", "intra_distance", "{:.4f}"),
                            ("mean distance between centers", "inter_distance", "{:.4f}"),
                            ("compactness (intra / inter)", "compactness", "{:.4f}")):
        summary.add_row(label, fmt.format(report[key]))
    console.print(summary)
    classes = list(report["per_class_accuracy"])
    table = Table(title="confusion (rows: true, columns: predicted)")
    table.add_column("class")
    table.add_column("acc", justify="right")
    for i in range(len(classes)):
        table.add_column(str(i), justify="right")
    for i, name in enumerate(classes):
        table.add_row(f"{i} {name}", f"{report['per_class_accuracy'][name]:.1%}",
                      *(str(v) for v in report["confusion"][i]))
    console.print(table)
