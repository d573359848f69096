"""The divergence guard: a step whose loss is non-finite or far above its recent level is not kept.

Every step compares its loss with a running average on the device and folds the verdict into a
flag there: nothing is read back per step. A step's loss judges the state the step before it
made, so the epoch's last update is judged at the end of the epoch by the loss of the updated
model on that batch: an epoch's start is always a state some loss has judged, even when the epoch
is a single step. Every CHECK_EVERY steps, and at the end of an epoch,
where the loop waits for the device anyway, the flag is read once. Clean: the state of the
previous check becomes the one to return to, and the present state the next candidate. Bad: the
weights, centers, momentum and epoch sums go back to the last state that later steps have
confirmed, the learning rate is halved for the rest of the run, and the epoch goes on from that
batch; the batches are a function of (seed, epoch), so the same ones come again. After
MAX_RETRIES returns in a row with no clean check between them the run stops.

A return is the last resort. What keeps the run from diverging in the first place is the recipe:
the warm-up and learning-rate rules (schedule.py) and clipping the gradient norm (train_step)."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from centerloss.device import distributed
from centerloss.errors import DivergenceError

CHECK_EVERY = 20     # steps between reads of the flag: one host sync per 20 steps on a GPU
SPIKE_FACTOR = 3.0   # a loss above SPIKE_FACTOR * recent + SPIKE_MARGIN is a spike ...
SPIKE_MARGIN = 2.0   # ... 2 nats above a tripled average: far beyond batch-to-batch noise
EMA_DECAY = 0.9      # the recent level: a running average over about 10 steps
LR_FACTOR = 0.5      # each return halves the learning rate for the rest of the run
MAX_RETRIES = 3      # returns in a row to the same state before the run stops


@dataclass
class GuardEvent:
    """One return to a good state, as the history and the terminal report it."""
    epoch: int
    batch: int          # the batch of the epoch at which the bad step was found
    back_to: int        # the batch of the epoch training goes on from
    reason: str         # "non-finite" or "spike"
    loss: float         # the worst loss of the steps since the last check
    recent: float       # the running average before them
    lr_scale: float     # the learning-rate factor from now on

    def as_record(self) -> dict:
        """What history.jsonl keeps: where training went back to and the factor from then on.
        Not where the bad step was found or its loss: a run stopped by a signal finds it sooner
        than one that is not, and the two must still end with the same history."""
        return {"epoch": self.epoch, "back_to": self.back_to, "reason": self.reason,
                "lr_scale": self.lr_scale}


class Guard:
    """Watches the loss of every step on the device; keeps the state to return to."""

    def __init__(self, model: torch.nn.Module, centers: torch.Tensor, optimizer: torch.optim.Optimizer,
                 ctx: distributed.Context = distributed.Context(), lr_scale: float = 1.0,
                 ema: float = -1.0):
        self.model, self.centers, self.optimizer, self.ctx = model, centers, optimizer, ctx
        self.lr_scale = lr_scale
        device = centers.device
        self.ema = torch.tensor(ema, device=device)       # < 0: no step seen yet
        self.bad = torch.zeros((), dtype=torch.bool, device=device)
        self.worst = torch.zeros((), device=device)
        self.retries = 0
        self.good = self.candidate = None                   # (weights, momentum) copies
        self.good_at = self.candidate_at = 0                # batch of the epoch of each copy
        self.good_sums = self.candidate_sums = None

    def _judge(self, loss: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Fold a loss into the flag and the worst loss seen: non-finite, or far above the recent
        level (the loss itself before any). Returns (loss, recent level, whether it was bad)."""
        loss = loss.detach().float()
        recent = torch.where(self.ema < 0, loss, self.ema)
        bad = ~torch.isfinite(loss) | (loss > SPIKE_FACTOR * recent + SPIKE_MARGIN)
        self.bad |= bad
        self.worst = torch.maximum(self.worst, torch.nan_to_num(loss, nan=math.inf))
        return loss, recent, bad

    def observe(self, loss: torch.Tensor) -> None:
        """Fold one step's loss into the flag and the running average: device ops only."""
        loss, recent, bad = self._judge(loss)
        # a bad step does not move the average, so a run of bad steps cannot make itself normal
        self.ema = torch.where(bad, recent, EMA_DECAY * recent + (1 - EMA_DECAY) * loss)

    def due(self, step: int) -> bool:
        return (step + 1) % CHECK_EVERY == 0

    def _weights(self) -> list[torch.Tensor]:
        """Every tensor of the model's state, BatchNorm's integer batch counts too, and the centers."""
        return list(self.model.state_dict().values()) + [self.centers]

    def _momentum(self) -> list[torch.Tensor]:
        return [s[k] for s in self.optimizer.state.values() for k in sorted(s)
                if isinstance(s[k], torch.Tensor)]

    def _copy(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        return ([t.detach().clone() for t in self._weights()],
                [t.detach().clone() for t in self._momentum()])

    def _restore(self, copy: tuple[list[torch.Tensor], list[torch.Tensor]]) -> None:
        weights, momentum = copy
        torch._foreach_copy_(self._weights(), weights)
        if momentum:
            torch._foreach_copy_(self._momentum(), momentum)
        else:                 # saved before the first step: SGD starts its momentum afresh
            self.optimizer.state.clear()

    def start_epoch(self, batch: int, sums: torch.Tensor) -> None:
        """The state at the start of an epoch (or of a resumed one) is the one to return to."""
        self.good = self._copy()
        self.candidate = None
        self.good_at = batch
        self.good_sums = sums.clone()
        self.bad.zero_()
        self.worst.zero_()

    def state(self) -> dict:
        """What a resumed run needs to guard as this one would: the factor and the level."""
        return {"lr_scale": self.lr_scale, "ema": float(self.ema)}

    def check(self, batch: int, sums: torch.Tensor, weights_too: bool = False,
              promote: bool = True, probe: torch.Tensor | None = None,
              after: torch.Tensor | None = None) -> bool:
        """Read the flag (one host sync). True if the steps since the last check were good; then,
        if promote, the last candidate becomes the state to return to and this one the next.
        weights_too also checks every weight, and probe (outputs of the model as it is now).
        after is the loss of the model as it is now, on the batch of the last step: the last
        update has no step's loss after it, and at the end of an epoch the state it made is the
        next epoch's start, so it is judged like a step's loss before anything builds on it
        (without moving the running average: it is no step's)."""
        if after is not None:
            self._judge(after)
        flag = self.bad.float()
        if weights_too:   # the last step's update has no loss after it yet: look at its result
            finite = torch.stack([t.isfinite().all() for t in self._weights()]).all()
            if probe is not None:     # outputs of the new weights: huge weights overflow there
                finite = finite & probe.isfinite().all()
            flag = torch.maximum(flag, (~finite).float())
        distributed.any_(flag, self.ctx)      # every rank goes back together, or none does
        bad, worst, recent = torch.stack([flag, self.worst, self.ema]).tolist()
        self.last_worst, self.last_recent = worst, recent
        self.bad.zero_()
        self.worst.zero_()
        if bad:
            return False
        if not promote:
            return True
        self.retries = 0
        if self.candidate is not None:
            self.good, self.good_at, self.good_sums = self.candidate, self.candidate_at, self.candidate_sums
        self.candidate, self.candidate_at, self.candidate_sums = self._copy(), batch, sums.clone()
        return True

    def recover(self, epoch: int, batch: int, sums: torch.Tensor) -> GuardEvent:
        """Go back to the good state after a failed check; the event says where and why."""
        self.retries += 1
        if self.retries > MAX_RETRIES:
            raise DivergenceError(f"epoch {epoch}: the loss diverged {MAX_RETRIES + 1} times in a row "
                                  f"(last {self.last_worst:.4g} against a recent {self.last_recent:.4g}), "
                                  f"even at {self.lr_scale:g} x the learning rate; train again with a "
                                  f"lower --lr or --lambda. Epochs before {epoch} are saved.")
        self._restore(self.good)
        sums.copy_(self.good_sums)
        self.candidate = None
        self.lr_scale *= LR_FACTOR
        reason = "non-finite" if not math.isfinite(self.last_worst) else "spike"
        return GuardEvent(epoch, batch, self.good_at, reason, self.last_worst, self.last_recent,
                          self.lr_scale)
