"""`cl train`."""
from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Optional

import typer

from centerloss.config import CONFIG_DEFAULTS
from centerloss.config.config import Config
from centerloss.errors import ClError, WriteError
from centerloss.store.runfolder import model_path

from .app import app, console, err_console, fail
from .flags import flag
from .streams import StdoutGone


def _given(ctx: typer.Context, name: str) -> bool:
    """Whether the user typed this flag (as opposed to Typer filling in its default)."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")


@app.command()
def train(
    ctx: typer.Context,
    lam: float = flag("--lambda"),
    alpha: float = flag("--alpha"),
    head: str = flag("--head"),
    margin: Optional[float] = flag("--margin"),
    scale: Optional[float] = flag("--scale"),
    epochs: Optional[int] = flag("--epochs"),
    batch_size: int = flag("--batch-size"),
    lr: Optional[float] = flag("--lr"),
    grad_clip: float = flag("--grad-clip"),
    model: str = flag("--model"),
    feature_dim: int = flag("--feature-dim"),
    dataset: str = flag("--dataset"),
    data_dir: Optional[Path] = flag("--data-dir"),
    image_size: int = flag("--image-size"),
    channels: int = flag("--channels"),
    memory_mb: int = flag("--memory-mb"),
    workers: int = flag("--workers"),
    out: Path = flag("--out"),
    device: str = flag("--device"),
    precision: str = flag("--precision"),
    compile: Optional[bool] = flag("--compile"),
    seed: int = flag("--seed"),
    augment: int = flag("--augment"),
    keep_checkpoints: str = flag("--keep-checkpoints"),
    config: Optional[Path] = flag("--config"),
    print_config: bool = flag("--print-config"),
    tensorboard: bool = flag("--tensorboard"),
    overwrite: bool = flag("--overwrite", help="Replace the run already in --out: its checkpoints, "
                                               "snapshots and history go; other files stay."),
    resume: bool = typer.Option(False, help="Continue the run in --out from its last saved state, "
                                            "with the run's own settings; --epochs may extend it."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print only the final line."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per epoch on stdout."),
    live: Optional[bool] = typer.Option(None, "--live/--no-live", help="Draw recent training features under "
                                        "the progress bar [default: on for 2-D features on a terminal of at "
                                        "least 20 rows and 60 columns; --live draws wider ones through PCA]."),
    live_window: bool = typer.Option(False, "--live-window", help="Also show the recent training features "
                                     "in a matplotlib window, redrawn at each epoch's end (needs a display; "
                                     "it closes when training ends: see cl plot)."),
) -> None:
    """Train a CNN with softmax + lambda * center loss and write the run folder.

    Under `torchrun --nproc-per-node N -m cli train ...` it trains on N processes with
    DistributedDataParallel; --batch-size is then the batch of all of them together."""
    from centerloss.device.distributed import launched
    from centerloss.errors import Interrupted
    from centerloss.train import resume as resume_mod
    from centerloss.train.loop import train as run_training

    from .render import (  # here: render imports torch, --help must not
        TrainReporter,
        epoch_line,
        plural,
        retrieval_line,
    )
    # every parameter named as a Config field is that field (centerloss.options)
    values = {name: value for name, value in ctx.params.items() if name in CONFIG_DEFAULTS}
    given = {name for name in ctx.params if _given(ctx, name)}
    if config is not None:      # the file's settings, under the flags typed
        from centerloss.store.configfile import read_config
        settings = {k: v for k, v in read_config(config).items() if k not in given and v is not None}
        given |= set(settings)
        out = Path(settings.pop("out", out))
        tensorboard = settings.pop("tensorboard", tensorboard)
        values.update(settings)
    data_dir = values["data_dir"]
    values["data_dir"] = os.path.realpath(data_dir) if data_dir else ""   # saved: keep it valid elsewhere
    dataset, batch_size = values["dataset"], values["batch_size"]
    if resume and overwrite:
        fail("--resume continues the run in --out and --overwrite replaces it; pass only one", 2)
    if dataset == "folder" and not data_dir and not resume:
        fail("--dataset folder needs --data-dir: a folder with one subfolder of images per class", 2)
    if live and (quiet or as_json):
        fail("--live draws under the progress bar, which --quiet and --json leave out; pass only one", 2)
    if live_window:
        from .livewindow import display_problem
        problem = display_problem()
        if problem:
            fail(problem, 2)
    if live and not console.is_terminal:
        err_console.print("note: --live draws on a terminal only; stdout is not one, so no view is shown")
    header = None
    if resume:      # the run's own config, with what the user typed checked against it, once
        header = resume_mod.peek(out)
        epoch, batch = header.epoch, header.batch
        cfg = resume_mod.resume_config(header.config, {k: v for k, v in values.items()
                                                       if k in given}, epoch, batch)
    else:
        cfg = Config(**values)          # train() validates it, as it does any caller's
    if print_config:
        from centerloss.config.file import dump
        if header is None:
            cfg.validate()
        print(dump(cfg), end="")
        return
    if header is not None:
        if epoch > cfg.epochs:
            (err_console if as_json else console).print(   # --json keeps stdout for JSON only
                f"{out} has finished its {plural(cfg.epochs, 'epoch', 'epochs')}; pass --epochs N "
                f"to train longer")
            return
        if not (quiet or as_json):
            console.print(f"resuming {out} at epoch {epoch}" + (f", batch {batch + 1}" if batch else ""))
    where = launched()      # rank 0 reports; the others say which they are
    main, world = where.is_main, where.world
    if main and world > 1 and not (quiet or as_json):
        console.print(f"torchrun: {world} processes under DDP, each training on 1/{world} of "
                      f"every batch of {batch_size}")
    reporter = TrainReporter(console, quiet=quiet, as_json=as_json, live=live, window=live_window,
                             auto_epochs=header is None and "epochs" not in given)
    callbacks = reporter
    if tensorboard and main:
        from centerloss.train.callbacks import Fanout
        from centerloss.train.tensorboard import TensorBoardWriter
        callbacks = Fanout(reporter, TensorBoardWriter(out))
    try:
        records = run_training(cfg, out, callbacks, overwrite=overwrite, resume=header or False)
    except Interrupted as e:
        callbacks.close()
        err_console.print(f"{e}; resume with: cl train --resume --out {shlex.quote(str(out))}",
                          markup=False)
        raise typer.Exit(128 + e.signum)
    except KeyboardInterrupt:      # a second Ctrl-C, or one before training began
        callbacks.close()
        fail(f"interrupted; {saved_so_far(out)}", 130)
    except StdoutGone as e:        # `cl train --json | head -1`: the files are the run, not stdout
        callbacks.close()
        fail(f"{e}; training stopped, and {saved_so_far(out)}")
    except WriteError as e:        # a full disk, say: what is saved, and how to go on
        callbacks.close()
        fail(f"{e}; {saved_so_far(out)}" if main else f"rank {where.rank}: {e}")
    except ClError as e:
        callbacks.close()
        fail(str(e) if main else f"rank {where.rank}: {e}", e.exit_code)
    callbacks.close()
    if not main:
        return
    last = records[-1]
    if quiet:
        console.print(epoch_line(last, len(records)))
    elif not as_json:
        if retrieval_line(last):
            console.print(retrieval_line(last), highlight=False)
        console.print(f"saved {model_path(out)} (epoch {last['epoch']}); "
                      f"next: cl eval --run {out}")


def saved_so_far(out: Path) -> str:
    """What a stopped run left in its folder, and how to go on: for the last line it prints."""
    from centerloss.store import checkpoint as ckpt_io, runfolder

    from .render import plural
    done = len(ckpt_io.read_history(out))
    if not runfolder.resume_path(out).is_file():
        return f"nothing was written to {out}"
    return (f"{out} holds {plural(done, 'finished epoch', 'finished epochs')}; resume with: "
            f"cl train --resume --out {shlex.quote(str(out))}")
