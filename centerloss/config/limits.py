"""The range every number a user gives must lie in, in one table, checked before anything is
allocated, read or written.

A value that decides how much memory or time a command takes (an image side, a shift, a count
of pairs or folds, a batch) is bounded here, so that `--image-size 100000` is refused with the
range instead of asking the machine for terabytes. Every float must also be finite: `--lr inf`
would otherwise pass and fail only after an epoch of work."""
from __future__ import annotations

import math

from centerloss.errors import OptionError

# flag -> (lowest, highest, what the bounds mean). The upper bounds are far above any sensible
# run and far below what would exhaust a machine.
RANGES: dict[str, tuple[float, float, str]] = {
    "--lambda": (0, 1e4, "0 is softmax alone"),
    "--alpha": (0, 1, "the center learning rate of Eq. 4, in (0, 1]"),
    "--epochs": (1, 100_000, ""),
    "--batch-size": (1, 65_536, "images per batch"),
    "--lr": (0, 1000, "the peak learning rate, > 0"),
    "--momentum": (0, 1, ""),
    "--weight-decay": (0, 1, ""),
    "--warmup-epochs": (0, 100_000, ""),
    "--grad-clip": (0, 1e6, "the largest gradient norm of a step; 0 turns clipping off"),
    "--feature-dim": (1, 8192, ""),
    "--augment": (0, 64, "pixels of random shift; at most a quarter of the image side"),
    "--image-size": (0, 1024, "pixels; 0 is the data set's own, else at least 8"),
    "--memory-mb": (0, 1 << 30, "0 is a quarter of free memory"),
    "--workers": (-1, 256, "-1 is cores - 1"),
    "--seed": (0, 2 ** 32 - 1, ""),
    "--snapshot-train": (0, 1_000_000, "train images whose features each epoch keeps"),
    # cl eval, cl embed and cl plot
    "--num-pairs": (2, 1_000_000, "pairs drawn from the test split"),
    "--folds": (2, 100, "folds of the best-threshold accuracy"),
    "--pair-seed": (0, 2 ** 32 - 1, ""),
    "--fps": (0.1, 60, "GIF frames per second"),
    "--epoch": (1, 100_000, ""),
}
# Where 0 itself is outside the range but the bound is written 0: (0, x] rather than [0, x].
OPEN_BELOW = {"--alpha", "--lr"}


def check(flag: str, value: float | int) -> None:
    """OptionError naming the flag, the value and the range it accepts, unless value lies in it."""
    lo, hi, note = RANGES[flag]
    if isinstance(value, float) and not math.isfinite(value):
        raise OptionError(f"{flag} must be a finite number, got {value}")
    low_ok = value > lo if flag in OPEN_BELOW else value >= lo
    if not (low_ok and value <= hi):
        bracket = "(" if flag in OPEN_BELOW else "["
        why = f" ({note})" if note else ""
        raise OptionError(f"{flag} must be in {bracket}{_num(lo)}, {_num(hi)}]{why}, got {_num(value)}")


def _num(v: float | int) -> str:
    return str(v) if isinstance(v, int) else f"{v:g}"


def tidy(value: float) -> float:
    """A float32 result as the figure it stands for: 0.7444000244140625 -> 0.7444. Six
    significant digits are more than any metric here carries."""
    return float(f"{value:.6g}") if math.isfinite(value) else value


def tidy_json(obj):
    """obj with every float in it passed through tidy, for JSON a person reads."""
    if isinstance(obj, float):
        return tidy(obj)
    if isinstance(obj, dict):
        return {k: tidy_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [tidy_json(v) for v in obj]
    return obj
