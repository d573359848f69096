"""The divergence guard: bad steps are thrown away, the run goes back to its last good state with a
lower learning rate and carries on; resume still ends bit-identical; the recipe's rules."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from support.runs import make_data, tiny_config
from test_reliability import SignalAt, assert_same_run

from centerloss.config.config import Config
from centerloss.config.recipe import MIN_WARMUP_STEPS, Schedule, peak_lr, warmup_steps
from centerloss.errors import Interrupted
from centerloss.store import checkpoint as ckpt_io
from centerloss.train.guard import CHECK_EVERY, Guard
from centerloss.train.loop import Callbacks, train


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_data(tmp_path_factory.mktemp("guard-data"))


class PoisonOnce(Callbacks):
    """Makes the loss of one step (the batch after `at`, at the full learning rate) NaN or huge,
    as a diverging step would be; counts the guard's events."""

    def __init__(self, at: tuple[int, int], factor: float, then: Callbacks | None = None):
        self.at, self.factor, self.then = at, factor, then or Callbacks()
        self.armed, self.events = False, []

    def on_batch(self, epoch, batch, batches, images, window) -> None:
        self.armed = (epoch, batch) == self.at and not self.events
        self.then.on_batch(epoch, batch, batches, images, window)

    def on_guard(self, event) -> None:
        self.events.append(event)
        self.then.on_guard(event)


@pytest.fixture
def poisoned(monkeypatch):
    """Installs the poison into F.cross_entropy, as train_step calls it; returns a factory."""
    real = F.cross_entropy
    active: list[PoisonOnce] = []

    def cross_entropy(logits, target, *args, **kwargs):
        loss = real(logits, target, *args, **kwargs)
        if active and active[-1].armed:
            active[-1].armed = False
            return loss * active[-1].factor
        return loss

    monkeypatch.setattr(F, "cross_entropy", cross_entropy)

    def make(at, factor, then=None) -> PoisonOnce:
        active.append(PoisonOnce(at, factor, then))
        return active[-1]
    return make


@pytest.mark.parametrize("factor,reason", [(float("nan"), "non-finite"), (1e4, "spike")])
def test_a_diverging_step_is_undone_and_the_run_goes_on(data, tmp_path, poisoned, factor, reason):
    cb = poisoned((2, 1), factor)
    history = train(tiny_config(data), tmp_path / "run", cb)
    assert [r["epoch"] for r in history] == [1, 2, 3]
    assert len(cb.events) == 1
    event = cb.events[0]
    assert (event.epoch, event.back_to, event.reason, event.lr_scale) == (2, 0, reason, 0.5)
    assert history[1]["guard"] == [event.as_record()]        # and so in history.jsonl
    assert ckpt_io.read_history(tmp_path / "run")[1]["guard"] == [event.as_record()]
    assert "guard" not in history[0] and "guard" not in history[2]
    ckpt = ckpt_io.load_checkpoint(tmp_path / "run" / "model.safetensors")
    assert all(torch.isfinite(t).all() for t in ckpt.model_state.values())
    assert all(math.isfinite(history[2][k]) for k in ("train_ce", "train_center", "test_ce"))
    # the rest of the run trains at half the learning rate the schedule gives
    clean = train(tiny_config(data), tmp_path / "clean")
    assert history[2]["lr"] == pytest.approx(0.5 * clean[2]["lr"])


@pytest.mark.parametrize("stop_at", [(2, 2), (3, 1)])
def test_resume_across_a_guard_event_is_bit_identical(data, tmp_path, poisoned, stop_at):
    """Stopped right after the bad step (the stop itself finds it and goes back) or an epoch later."""
    train(tiny_config(data), tmp_path / "reference", poisoned((2, 1), float("nan")))
    out = tmp_path / "stopped"
    with pytest.raises(Interrupted):
        train(tiny_config(data), out, poisoned((2, 1), float("nan"), SignalAt(*stop_at)))
    train(tiny_config(data), out, resume=True)     # the bad step lies behind the resumed run
    assert_same_run(tmp_path / "reference", out)


@pytest.fixture
def wrecked(monkeypatch):
    """Makes the update of the n-th step throw the class directions far out, after that step's own
    loss was computed: the loss it reports is normal and every weight stays finite, but the next
    loss is far above the recent level. Counts the steps that ran."""
    from centerloss.train import loop as train_mod
    real, calls = train_mod.train_step, []

    def train_step(step, x, y, lr, scale=1.0):
        result = real(step, x, y, lr, scale)
        calls.append(lr)
        if len(calls) == wrecked.at:
            with torch.no_grad():
                step.forward.classifier.weight.mul_(-1e4)
        return result
    monkeypatch.setattr(train_mod, "train_step", train_step)

    def wrecked(at: int) -> list[float]:
        wrecked.at = at
        return calls
    return wrecked


@pytest.mark.parametrize("batch_size,batches", [(48, 1), (16, 3)])
def test_an_epochs_last_update_is_judged_before_the_next_epoch_builds_on_it(
        data, tmp_path, wrecked, batch_size, batches):
    """An epoch of one step (a small data set at a large batch) starts from the state the last
    epoch's update made; no loss of its own had judged that state, so a return replayed the same
    bad loss at any learning rate until the run stopped. The end of an epoch now judges it."""
    lrs = wrecked(2 * batches)              # the last step of epoch 2
    cb = PoisonOnce((0, 0), 1.0)            # never armed: only counts the guard's events
    history = train(tiny_config(data, batch_size=batch_size), tmp_path / "run", cb)
    assert [r["epoch"] for r in history] == [1, 2, 3]
    assert [(e.epoch, e.batch, e.reason, e.lr_scale) for e in cb.events] == [(2, batches, "spike", 0.5)]
    assert len(lrs) == 4 * batches - cb.events[0].back_to     # the undone steps of epoch 2 ran again
    assert lrs[2 * batches] == pytest.approx(0.5 * lrs[cb.events[0].back_to + batches])
    assert "guard" not in history[2] and history[2]["test_ce"] < 5


def test_resume_across_an_end_of_epoch_return_is_bit_identical(data, tmp_path, wrecked):
    """Stopped at the wrecked step itself: the stop finds it, goes back, and saves that state."""
    cfg = tiny_config(data, batch_size=48)
    steps = wrecked(2)
    train(cfg, tmp_path / "reference")
    steps.clear()         # the stopped run's epoch 2 is wrecked too, its resumed part is not
    with pytest.raises(Interrupted):
        train(cfg, tmp_path / "stopped", SignalAt(2, 1))
    train(cfg, tmp_path / "stopped", resume=True)
    assert_same_run(tmp_path / "reference", tmp_path / "stopped")


def test_guard_flags_nan_and_spikes_but_not_noise():
    model = torch.nn.Linear(2, 2)
    centers = torch.zeros(2, 2)
    guard = Guard(model, centers, torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9))
    sums = torch.zeros(2)
    guard.start_epoch(0, sums)
    for loss in (2.3, 2.0, 2.6, 1.7, 4.0, 2.2):        # noise, even a doubling, is no divergence
        guard.observe(torch.tensor(loss))
    assert guard.check(6, sums)
    guard.observe(torch.tensor(3 * 2.3 + 2.5))          # far above the recent level
    assert not guard.check(7, sums)
    guard.observe(torch.tensor(float("inf")))
    assert not guard.check(8, sums)


def test_guard_returns_to_a_confirmed_state():
    """The state at a clean check is a candidate; it is returned to only after the next clean one,
    since the last step before a check may be the one that diverged."""
    model = torch.nn.Linear(1, 1, bias=False)
    torch.nn.init.constant_(model.weight, 1.0)
    guard = Guard(model, torch.zeros(1, 1), torch.optim.SGD(model.parameters(), lr=0.1))
    sums = torch.zeros(2)
    guard.start_epoch(0, sums)
    for batch, weight in ((20, 2.0), (40, 3.0)):
        with torch.no_grad():
            model.weight.fill_(weight)
        guard.observe(torch.tensor(1.0))
        assert guard.check(batch, sums)
    with torch.no_grad():
        model.weight.fill_(float("nan"))
    guard.observe(torch.tensor(float("nan")))
    assert not guard.check(60, sums)
    event = guard.recover(1, 60, sums)
    assert model.weight.item() == 2.0 and event.back_to == 20 and guard.lr_scale == 0.5


def test_guard_restores_integer_state_too():
    """BatchNorm's batch count is part of the state returned to, not only the float tensors."""
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    guard = Guard(model, torch.zeros(1, 2), torch.optim.SGD(model.parameters(), lr=0.1))
    sums = torch.zeros(2)
    guard.start_epoch(0, sums)
    model.train()
    for _ in range(3):
        model(torch.randn(4, 2))
    assert model[1].num_batches_tracked.item() == 3
    guard.observe(torch.tensor(float("nan")))
    assert not guard.check(20, sums)
    guard.recover(1, 20, sums)
    assert model[1].num_batches_tracked.item() == 0


def test_lr_follows_the_batch_size_and_warmup_the_run_length():
    assert peak_lr(Config(batch_size=128)) == pytest.approx(0.05)
    assert peak_lr(Config(batch_size=512)) == pytest.approx(0.1)
    assert peak_lr(Config(batch_size=512, lr=0.3)) == 0.3
    # the square root stops at batch 1024: 4096 runs at 1024's rate, not at 0.28
    assert peak_lr(Config(batch_size=1024)) == pytest.approx(0.05 * 8 ** 0.5)
    assert peak_lr(Config(batch_size=4096)) == pytest.approx(0.05 * 8 ** 0.5)
    assert peak_lr(Config(batch_size=4096, lr=0.3)) == 0.3
    # full MNIST at 128: half an epoch; a 4,000-image set or a large batch: the minimum ...
    assert warmup_steps(Config(epochs=12), 469) == 234
    assert warmup_steps(Config(epochs=20), 32) == MIN_WARMUP_STEPS
    # ... but never most of a short run
    assert warmup_steps(Config(epochs=12, batch_size=4096), 15) == 36
    s = Schedule.for_run(Config(epochs=2, batch_size=4096), 15)
    assert s.warmup == 6 and s(5) == pytest.approx(s.lr) and s(29) < 0.01 * s.lr
    assert CHECK_EVERY > 1       # the guard reads the device back only every few steps


def test_the_cli_says_so_in_one_line(data, tmp_path, poisoned):
    import io

    from rich.console import Console

    from cli.render import TrainReporter
    buffer = io.StringIO()
    train(tiny_config(data), tmp_path / "run",
          poisoned((2, 1), 1e4, TrainReporter(Console(file=buffer, width=200))))
    text = buffer.getvalue()
    assert ("guard: epoch 2, by batch 3: the loss jumped to " in text
            and "; back to batch 0, learning rate x0.5 from now on" in text)
