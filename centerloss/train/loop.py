"""The training loop: softmax cross-entropy + lambda * center loss, centers moved by Eq. 4.

It reports through callbacks and knows no terminal; cli/ renders. Losses are summed on the
device and read only when a callback asks, so the loop itself never waits for the device."""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from centerloss.config.config import Config
from centerloss.config.keep import keep_count
from centerloss.config.recipe import Schedule, epochs_for
from centerloss.data import batches as batch_mod
from centerloss.data.registry import dataset_for
from centerloss.data.sample import fingerprint
from centerloss.data.types import Dataset
from centerloss.device import accel, compile_cache, compile_rule, cpu, distributed
from centerloss.device.runtime import Runtime
from centerloss.errors import Interrupted, TrainError
from centerloss.evaluation.evaluate import evaluate_epoch, retrieval_due
from centerloss.model import blocks as blocks_mod
from centerloss.model.center_loss import CenterLoss
from centerloss.model.heads import Loss, softmax_loss, training_loss
from centerloss.model.nets import build_model_for, place
from centerloss.store import checkpoint as ckpt_io, configfile, retention, runfolder
from centerloss.store.runfolder import check_out_dir
from centerloss.train import preflight, resume as resume_mod
from centerloss.train.guard import Guard, GuardEvent
from centerloss.train.interrupt import StopRequest, stop_on_signals
from centerloss.train.optimizer import make_optimizer
from centerloss.train.resume import EpochProgress


class LossWindow:
    """Sums of the cross-entropy and center loss of recent batches, kept on the device."""

    def __init__(self, device: torch.device, sums: torch.Tensor | None = None, batches: int = 0):
        self.sums = torch.zeros(2, device=device) if sums is None else sums.clone()
        self.batches = batches

    def add(self, ce: torch.Tensor, center: torch.Tensor) -> None:
        self.sums += torch.stack([ce.detach().float(), center.detach().float()])
        self.batches += 1

    def read(self) -> tuple[float, float]:
        """Mean (cross-entropy, center loss) since the last read. This waits for the device."""
        if self.batches == 0:
            return float("nan"), float("nan")
        ce, center = (self.sums / self.batches).tolist()
        self.sums.zero_()
        self.batches = 0
        return ce, center


class Callbacks:
    """Override what you need; the loop calls these and nothing else to report."""

    def on_start(self, cfg: Config, runtime: Runtime, dataset: Dataset,
                 start_epoch: int) -> None: ...

    def on_epoch_start(self, epoch: int, batches: int) -> None: ...

    def on_batch(self, epoch: int, batch: int, batches: int, images: int, window: LossWindow) -> None: ...

    def on_features(self, features: torch.Tensor, labels: torch.Tensor, centers: torch.Tensor) -> None:
        """Each batch's detached features, labels and the centers, still on the device: a
        callback that reads them back here would make every step wait for the device."""

    def on_evaluate(self, epoch: int) -> None: ...

    def on_epoch_end(self, record: dict) -> None: ...

    def on_guard(self, event: GuardEvent) -> None:
        """The guard threw away steps whose loss diverged and lowered the learning rate."""


def train(cfg: Config, out: Path | str = "params", callbacks: Callbacks | None = None,
          dataset: Dataset | None = None, overwrite: bool = False,
          resume: bool | resume_mod.Header = False) -> list[dict]:
    """Train per cfg, write the run folder `out`, return the records of all its epochs.

    resume=True continues the run in `out` from RUN/resume.safetensors, with a cfg that must agree
    with the run's own; resume=resume.peek(out), with cfg from resume.resume_config, says that
    was checked already (the CLI does: it reads the header first, to say where it resumes).
    SIGINT or SIGTERM stops at the end of the current batch, saves that state and raises
    Interrupted. Started by torchrun, every rank calls this and trains its shard
    under DDP; only rank 0 reports through the callbacks, evaluates and writes (distributed.py)."""
    if not isinstance(resume, resume_mod.Header):    # resume_config validated that config
        cfg.validate()
    try:
        ctx = distributed.join(cfg.device)
    except distributed.DistributedError as e:
        raise TrainError(str(e)) from e
    try:
        check_out_dir(Path(out), overwrite, bool(resume))
        preflight.check_out(cfg, Path(out))
        # One run at a time per folder, for the whole run, data load included (rank 0 writes).
        with runfolder.run_lock(Path(out)) if ctx.is_main else contextlib.nullcontext():
            return _train(cfg, Path(out), callbacks or Callbacks(), dataset, overwrite, resume, ctx)
    finally:
        distributed.leave(ctx)


def _train(cfg: Config, out: Path, cb: Callbacks, dataset: Dataset | None, overwrite: bool,
           resume: bool | resume_mod.Header, ctx: distributed.Context) -> list[dict]:
    runtime = Runtime.resolve(cfg.device, cfg.precision, ctx)
    device = runtime.device
    header = resume if isinstance(resume, resume_mod.Header) else None
    if resume and cfg.epochs is None:    # a library caller resuming with the default: the run's
        cfg = dataclasses.replace(cfg, epochs=resume_mod.peek(out).config.epochs)   # (a Header's is set)
    state = resume_mod.load_state(out, cfg, header) if resume else None
    history = state.history if state else []
    if state and len(history) >= cfg.epochs:
        return history
    if not ctx.is_main:
        cb = Callbacks()
    with distributed.main_first(ctx):    # rank 0 alone downloads or unpacks
        ds = dataset or dataset_for(cfg, device)
    preflight.check_data(cfg, ds, ctx.world)     # before --overwrite below erases anything
    data_id = fingerprint(ds)
    if state and state.data_fingerprint and state.data_fingerprint != data_id:
        raise TrainError(f"--resume: the {cfg.dataset} data found now differs from the data {out} "
                         f"was trained on; resume with the run's own --data-dir "
                         f"({cfg.data_dir or 'the default'}), or train a new run elsewhere")
    if device.type == "cpu":
        cpu.keep_freed_blocks()          # each step reuses the last one's freed activations
    torch.manual_seed(cfg.seed)
    num_classes = len(ds.classes)
    model = build_model_for(cfg, num_classes, ds.input_shape)
    model = place(model, device)
    net = distributed.wrap(model, ctx)   # what trains; `model` is what is evaluated and saved
    center_loss = CenterLoss(num_classes, cfg.feature_dim, cfg.alpha, ctx.group).to(device)
    optimizer = make_optimizer(model, cfg)
    forward = net
    # torch.compile as --compile/--no-compile say, else where it pays for the images left to train
    epochs = epochs_for(cfg, batch_mod.batches_per_epoch(len(ds.train), cfg.batch_size, ctx.world))
    left = (epochs - (state.progress.epoch if state else 1) + 1) * len(ds.train) // ctx.world
    graph = functools.cache(lambda blocks: compile_cache.graph_key(
        net, cfg.batch_size // ctx.world, ds.input_shape, runtime, ctx.world, blocks))
    choice = compile_rule.decide(cfg.compile, runtime, cfg.model, left,
                                 cached=lambda blocks: compile_cache.holds(graph(blocks)),
                                 blocks_ok=ctx.world == 1 and blocks_mod.count(net) > 0)
    runtime = dataclasses.replace(runtime, compile_note=choice.note)
    if choice.on:
        try:   # compiled for the full shard of a batch; other sizes run eager
            forward = accel.compiled_forward(
                net, cfg.batch_size // ctx.world, device, blocks=choice.blocks,
                on_compiled=lambda: compile_cache.remember(graph(choice.blocks)))
        except accel.CompileError as e:
            raise TrainError(str(e)) from e
    batches = batch_mod.batches_per_epoch(len(ds.train), cfg.batch_size, ctx.world)
    # From here on the run's epochs are a number, in every file it writes and for --resume.
    chosen = cfg.epochs is None and not state          # config.yaml says the rule chose them
    cfg = dataclasses.replace(cfg, epochs=epochs_for(cfg, batches))
    schedule = Schedule.for_run(cfg, batches)
    if state:
        resume_mod.restore(state, model, center_loss.centers, optimizer, device,
                           resume_mod.state_path(out))
        if ctx.is_main:
            runfolder.remove_temp_files(out)
            ckpt_io.write_history(out, history)
    elif overwrite and ctx.is_main:      # only now: bad flags or data above leave the old run untouched
        runfolder.clear_run(out)
    if ctx.is_main:
        ruled = cfg.compile is None         # config.yaml holds what the compile rule chose
        configfile.write_run_config(out, dataclasses.replace(cfg, compile=choice.value) if ruled
                                    else cfg, chosen, choice.why if ruled else "")

    def save_state(progress: EpochProgress) -> Path:
        path = resume_mod.state_path(out)
        if ctx.is_main:
            path = resume_mod.save_state(out, resume_mod.capture(
                cfg, progress, history, list(ds.input_shape), model, center_loss.centers,
                optimizer, device, guard.state(), data_id))
        return path

    progress = state.progress if state else EpochProgress(1)
    guard = Guard(model, center_loss.centers, optimizer, ctx, **(state.guard if state else {}))
    if not state:
        save_state(progress)     # from here on --resume works, even if epoch 1 never ends
    loop = Loop(Step(forward, center_loss, optimizer, runtime, cfg.lam, cfg.grad_clip,
                     training_loss(model)), model, ds, cfg, schedule, guard, cb)
    cb.on_start(cfg, runtime, ds, progress.epoch)
    with stop_on_signals() as stop:
        for epoch in range(progress.epoch, cfg.epochs + 1):
            with accel.cudnn_mode(autotune=False):
                record = train_epoch(loop, epoch, progress, stop)
            if record is None:
                raise Interrupted(stop.signum, epoch, progress.batch, batches, save_state(progress))
            if ctx.group is not None:   # the proof that the all-reduced updates kept them equal
                record["center_spread"] = distributed.spread(center_loss.centers, ctx)
            progress = EpochProgress(epoch + 1)
            if not ctx.is_main:
                history.append(record)
                continue
            cb.on_evaluate(epoch)
            due = retrieval_due(epoch, cfg.epochs, len(ds.test))
            record.update(evaluate_epoch(model, center_loss, ds, runtime, cfg.snapshot_train,
                                         retrieval=cfg.head if due else None))
            # In this order a kill anywhere is safe: the epoch's files, then the state that
            # counts the epoch done, then the history that lists it.
            save_epoch(out, model, center_loss, ds, cfg, epoch, record)
            history.append(record)
            saved = save_state(progress)
            ckpt_io.write_history(out, history)
            retention.prune(out, keep_count(cfg.keep_checkpoints))    # after the history: --keep-checkpoints
            cb.on_epoch_end(record)
            if stop.requested and epoch < cfg.epochs:
                raise Interrupted(stop.signum, epoch + 1, 0, batches, saved)
    return history


@dataclass
class Step:
    """What one optimisation step needs besides its batch and learning rate."""
    forward: accel.Forward          # the model, maybe under DDP and compiled
    center_loss: CenterLoss
    optimizer: torch.optim.Optimizer
    runtime: Runtime
    lam: float
    clip: float = 0.0               # largest gradient norm; 0: none
    head_loss: Loss = softmax_loss  # (logits, labels) -> cross-entropy, a margin head's with its margin


@dataclass
class Loop:
    """What an epoch of training needs: the step, the model it evaluates and saves, the data, the
    run's config, the learning-rate schedule, the guard and the callbacks."""
    step: Step
    model: torch.nn.Module
    ds: Dataset
    cfg: Config
    schedule: Schedule
    guard: Guard
    cb: Callbacks


def train_step(step: Step, x: torch.Tensor, y: torch.Tensor, lr: float, scale: float = 1.0
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One optimisation step on a batch; returns (features, cross-entropy, center loss), still on
    the device. Nothing here reads a value back, so the host never waits for the device. `scale`
    multiplies the loss that is differentiated (DDP's shard weighting), not the losses returned.
    `step.clip` > 0 scales the gradient down to that norm when it is larger: the step a 2-D feature
    layer takes otherwise can throw the features far out in one batch and diverge (a 4,000-image
    MNIST run did at a learning rate of 0.02). The norm stays on the device, so no sync."""
    optimizer = step.optimizer
    for group in optimizer.param_groups:
        group["lr"] = lr
    with step.runtime.autocast():
        features, logits = step.forward(x.contiguous(memory_format=torch.channels_last))
    ce = step.head_loss(logits, y)
    center = step.center_loss(features, y)          # also moves the centers by Eq. 4
    loss = ce + step.lam * center
    if scale != 1.0:
        loss = loss * scale
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if step.clip > 0:
        torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]],
                                       step.clip)
    optimizer.step()
    return features, ce, center


def train_epoch(loop: Loop, epoch: int, progress: EpochProgress | None = None,
                stop: StopRequest | None = None) -> dict | None:
    """Train one epoch from progress.batch on and return its record, or None if `stop` was
    requested before its last batch: `progress` then holds where it stopped. The guard (guard.py)
    throws away steps that diverged: the epoch then goes on from the last good batch with a lower
    learning rate."""
    model, ds, cfg, guard, cb = loop.model, loop.ds, loop.cfg, loop.guard, loop.cb
    center_loss, ctx, device = loop.step.center_loss, loop.step.runtime.ctx, loop.step.runtime.device
    model.train()
    center_loss.train()
    n = len(ds.train)
    batches = batch_mod.batches_per_epoch(n, cfg.batch_size, ctx.world)
    progress = progress or EpochProgress(epoch)
    window = LossWindow(device)
    totals = LossWindow(device, progress.loss_sums, progress.batch)
    cb.on_epoch_start(epoch, batches)
    start = time.perf_counter()
    seen = 0
    step = (epoch - 1) * batches
    first = progress.batch
    guard.start_epoch(first, totals.sums)
    while True:
        event = None
        for i, (x, y) in enumerate(batch_mod.train_batches(ds.train, cfg.batch_size, cfg.seed, epoch,
                                                           cfg.augment, ds.mean, ds.std, start=first,
                                                           rank=ctx.rank, world=ctx.world), first):
            m = min(cfg.batch_size, n - i * cfg.batch_size)   # the whole batch, over all ranks
            # DDP averages the ranks' gradients; weighting each shard's mean by its share of the
            # batch makes that average the gradient of the whole batch's mean even when shards
            # differ by one
            scale = y.shape[0] * ctx.world / m if ctx.world > 1 else 1.0
            features, ce, center = train_step(loop.step, x, y,
                                              loop.schedule(step + i) * guard.lr_scale, scale)
            guard.observe(ce + cfg.lam * center)
            cb.on_features(features.detach(), y, center_loss.centers)
            window.add(ce, center)
            totals.add(ce, center)
            seen += m
            progress.batch = i + 1
            cb.on_batch(epoch, i + 1, batches, seen, window)
            if stop is not None and stop.requested and i + 1 < batches:
                if not guard.check(i + 1, totals.sums, weights_too=True, promote=False):
                    event = guard.recover(epoch, i + 1, totals.sums)
                    break
                progress.loss_sums = totals.sums
                return None
            if guard.due(step + i) and i + 1 < batches and not guard.check(i + 1, totals.sums):
                event = guard.recover(epoch, i + 1, totals.sums)
                break
        if event is None:     # the end of the epoch, where the loop waits for the device anyway
            logits, after = probe(loop, x, y)
            if guard.check(batches, totals.sums, weights_too=True, probe=logits, after=after):
                break
            event = guard.recover(epoch, batches, totals.sums)
        first = progress.batch = totals.batches = event.back_to
        progress.guard_events.append(event.as_record())
        cb.on_guard(event)
        if stop is not None and stop.requested:
            progress.loss_sums = totals.sums if first > 0 else None
            return None
    distributed.average_(totals.sums, ctx)            # every rank sees the same epoch losses
    train_ce, train_center = totals.read()            # waits for the device: the epoch is done
    seconds = time.perf_counter() - start
    record = {"epoch": epoch, "train_ce": train_ce, "train_center": train_center,
              "train_seconds": seconds, "train_images_per_s": seen / seconds,
              "lr": loop.schedule(step + batches - 1) * guard.lr_scale}
    if progress.guard_events:
        record["guard"] = list(progress.guard_events)
    return record


@torch.no_grad()
def probe(loop: Loop, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The guard's view of the epoch's last update, which no training loss has seen yet: the
    logits of the model as it is now for the batch x in eval mode (huge weights overflow there),
    and the loss it now gives (x, y) in training mode, as the next step would see it. Plain
    cross-entropy (a margin head's is only larger) + lambda * center loss; the centers do not
    move and BatchNorm's running statistics are put back, so the run goes on as if unprobed."""
    model, center_loss = loop.model, loop.step.center_loss
    x = x.contiguous(memory_format=torch.channels_last)
    model.eval()
    _, logits = model(x)
    model.train()
    buffers = [b.clone() for b in model.buffers()]
    center_loss.eval()
    try:
        with loop.step.runtime.autocast():
            features, train_logits = model(x)
        after = softmax_loss(train_logits, y) + loop.cfg.lam * center_loss(features, y)
    finally:
        center_loss.train()
        if buffers:
            torch._foreach_copy_(list(model.buffers()), buffers)
    return logits, after


def save_epoch(out: Path, model, center_loss, ds, cfg, epoch: int, record: dict) -> None:
    """Snapshot, epoch checkpoint, latest checkpoint, each file atomic. train() writes the history
    after these, so a run killed anywhere never lists an epoch whose files are not all there."""
    test_f, test_y = record.pop("_test_snapshot")
    snap = {"test_features": test_f, "test_labels": test_y, "centers": center_loss.centers,
            "class_weights": model.classifier.weight.detach()}   # the class directions of plots
    train_snap = record.pop("_train_snapshot", None)
    if train_snap is not None:
        snap["train_features"], snap["train_labels"] = train_snap
    metrics = {k: v for k, v in record.items() if k != "epoch"}
    meta = {"config": cfg.to_json(), "epoch": str(epoch), "dataset": cfg.dataset,
            "classes": json.dumps(list(ds.classes)), "metrics": json.dumps(metrics)}
    ckpt_io.save_features(runfolder.snapshot_path(out, epoch), snap, meta)
    state = {k: v for k, v in model.state_dict().items()}
    checkpoint = ckpt_io.Checkpoint(cfg, epoch, list(ds.classes), state, center_loss.centers,
                                    ds.input_shape, metrics, ds.normalization())
    ckpt_io.save_checkpoint(runfolder.checkpoint_path(out, epoch), checkpoint)
    ckpt_io.save_checkpoint(runfolder.model_path(out), checkpoint)
