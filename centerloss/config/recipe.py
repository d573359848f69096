"""The optimisation recipe: SGD with Nesterov momentum, a linear warm-up, one cosine decay to
zero, and the rules that size the learning rate and the warm-up from the batch and the data set.

The rules, as README and `cl train --help` state them:
- epochs, unless --epochs is given: DEFAULT_EPOCHS, or as many more as the run needs to take
  MIN_STEPS optimisation steps, at most MAX_AUTO_EPOCHS: a 2-D feature layer needs steps, not
  images, so a large batch or a small data set trains for more epochs;
- peak learning rate = BASE_LR * sqrt(batch size / BASE_BATCH), the batch counted up to
  MAX_SCALED_BATCH, unless --lr is given;
- warm-up = half an epoch, but at least MIN_WARMUP_STEPS steps, and at most
  MAX_WARMUP_FRACTION of the run: a small data set or a large batch still warms up;
- the gradient norm is clipped at --grad-clip (train_step).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol


class RunShape(Protocol):
    """What the recipe reads of a run's config (Config has these fields)."""
    epochs: int | None
    batch_size: int
    lr: float | None
    warmup_epochs: float
    lam: float
    feature_dim: int


BASE_LR = 0.05              # the peak learning rate at BASE_BATCH
BASE_BATCH = 128
# Larger batches keep the rate of this one: a 2-D feature layer at batch 4096 ran away at the rate
# the square root gives it (docs/recipe.md has the runs).
MAX_SCALED_BATCH = 1024
DEFAULT_EPOCHS = 12
# A 2-D feature layer needs optimisation steps, not images: a large batch or a small data set
# trains for more epochs until the run makes MIN_STEPS (docs/recipe.md: why, and the runs).
MIN_STEPS = 700
MAX_AUTO_EPOCHS = 60        # a tiny data set: 60 epochs, each evaluated and snapshotted, are plenty
WARMUP_EPOCHS = 0.5          # the warm-up, in epochs, before the two bounds below
MIN_WARMUP_STEPS = 100      # divergence shows in the first steps, whatever an epoch's length
MAX_WARMUP_FRACTION = 0.2   # a short run still spends most of its steps at a useful rate
# One cycle: a warm restart (SGDR) made a visible drop in accuracy, which reads as training gone
# wrong, and did not raise the final figures (docs/recipe.md); who wants 99% soon trains fewer
# epochs.


def epochs_for(cfg: RunShape, batches_per_epoch: int) -> int:
    """--epochs if given, else DEFAULT_EPOCHS, raised so that the run takes at least MIN_STEPS
    steps, but to no more than MAX_AUTO_EPOCHS."""
    if cfg.epochs is not None:
        return cfg.epochs
    needed = -(-MIN_STEPS // max(1, batches_per_epoch))
    return max(DEFAULT_EPOCHS, min(needed, MAX_AUTO_EPOCHS))


def epochs_rule() -> str:
    """The default epochs in words: `--epochs`' help."""
    return (f"[default: {DEFAULT_EPOCHS}, or more, to make at least {MIN_STEPS} steps (a large "
            f"batch or a small data set), at most {MAX_AUTO_EPOCHS}]")


def peak_lr(cfg: RunShape) -> float:
    """--lr if given, else BASE_LR scaled by the square root of the batch size up to
    MAX_SCALED_BATCH: large batches average out noise, so they take a larger step, but not a
    linearly larger one, which the 2-D feature layer does not survive, and none larger than
    batch MAX_SCALED_BATCH's."""
    return cfg.lr if cfg.lr is not None else scaled_lr(cfg.batch_size)


def scaled_lr(batch_size: int) -> float:
    return BASE_LR * math.sqrt(min(batch_size, MAX_SCALED_BATCH) / BASE_BATCH)


def rule() -> str:
    """The default learning rate and warm-up in words, from the constants above: `--lr`'s help."""
    return (f"one cosine decay to zero after a warm-up of {WARMUP_EPOCHS:g} epoch, at least "
            f"{MIN_WARMUP_STEPS} steps and at most {MAX_WARMUP_FRACTION:.0%} of the run) "
            f"[default: {BASE_LR:g} * sqrt(batch size / "
            f"{BASE_BATCH}), at most {scaled_lr(MAX_SCALED_BATCH):.3g} "
            f"(batch {MAX_SCALED_BATCH} and up)]")


def warmup_steps(cfg: RunShape, batches_per_epoch: int) -> int:
    total = epochs_for(cfg, batches_per_epoch) * batches_per_epoch
    steps = max(round(cfg.warmup_epochs * batches_per_epoch), MIN_WARMUP_STEPS)
    return max(1, min(steps, round(MAX_WARMUP_FRACTION * total)))


@dataclass
class Schedule:
    """A linear warm-up, then one cosine decay to zero at step `total`. The learning rate is a
    function of the step alone, so a resumed run needs no scheduler state to continue exactly, and
    a run begun under an older schedule (one with a warm restart) goes on under this one."""
    lr: float
    warmup: int
    total: int

    @classmethod
    def for_run(cls, cfg: RunShape, batches_per_epoch: int) -> "Schedule":
        warmup = warmup_steps(cfg, batches_per_epoch)
        total = epochs_for(cfg, batches_per_epoch) * batches_per_epoch
        return cls(peak_lr(cfg), warmup, total)

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return self.lr * (step + 1) / self.warmup
        progress = (step - self.warmup) / max(1, self.total - self.warmup)
        return self.lr * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


# Legal settings known to train badly, said on the start line (`notes`), never refused.
# With 2-D features a lambda above LARGEST_2D_LAMBDA lets the center loss outweigh softmax: the
# features collapse onto their centers before the classes separate (docs/recipe.md, the grids).
LARGEST_2D_LAMBDA = 1.0
# A test split of N images moves its accuracy in steps of 100/N %: under SMALL_TEST a step is
# over a point, larger than most differences between runs.
SMALL_TEST = 100


def steps_advice(epochs: int, batches_per_epoch: int) -> str:
    """What a run of too few steps should change, in words: the epochs that make MIN_STEPS."""
    needed = -(-MIN_STEPS // max(1, batches_per_epoch))
    if needed > MAX_AUTO_EPOCHS:     # a batch near the data set's size: more epochs is no remedy
        return (f"a smaller --batch-size makes more steps an epoch ({batches_per_epoch:,} now; "
                f"--epochs would need {needed:,})")
    return (f"--epochs {needed} makes {needed * batches_per_epoch:,}, a smaller --batch-size more "
            f"steps an epoch")


def notes(cfg: RunShape, test_images: int) -> list[str]:
    """One line each on the settings of this run that are legal but known to defeat the method or
    its measurement; empty for a run at the defaults."""
    said = []
    if cfg.lam == 0:
        said.append("lambda 0 trains softmax alone: the center loss is only watched (the centers "
                    "follow the features by Eq. 4), not trained, so it may rise")
    elif cfg.lam > LARGEST_2D_LAMBDA and cfg.feature_dim <= 2:
        said.append(f"lambda {cfg.lam:g} with {cfg.feature_dim}-D features: the center loss outweighs "
                    f"softmax and collapses the features onto their centers before the classes "
                    f"separate (one epoch of MNIST: 30.5% at lambda 10, 98.0% at 0.1); 0.01 to "
                    f"{LARGEST_2D_LAMBDA:g} trains, 0.1 is the default")
    if 0 < test_images < SMALL_TEST:
        said.append(f"the test split holds {test_images} image{'' if test_images == 1 else 's'}, "
                    f"so test accuracy moves in steps of {100 / test_images:.3g}%")
    return said
