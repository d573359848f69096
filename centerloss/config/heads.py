"""The classifier heads by name, the papers' margins and scales, and the check of a head's
settings: torch-free, so that Config and the options table can use them (the modules are
model/heads.py)."""
from __future__ import annotations

import math

from centerloss.errors import OptionError

HEADS = ("softmax", "sphereface", "cosface", "arcface")
ANGULAR_HEADS = HEADS[1:]
# The papers' margins and scale: A-Softmax m = 4; CosFace m = 0.35, s = 64; ArcFace m = 0.5,
# s = 64. SphereFace's paper scales by the feature norm; its normalised form uses s like the others.
DEFAULT_MARGIN = {"sphereface": 4.0, "cosface": 0.35, "arcface": 0.5}
DEFAULT_SCALE = 64.0
# Features of at most NARROW_DIM dimensions cannot meet those margins: ten classes on a circle are
# 36 degrees apart, so CosFace's target beats its neighbours only if m < 1 - cos 36° = 0.19. The
# defaults there are the ones measured in 2-D (docs/heads.md): on the full MNIST, 12 epochs,
# CosFace m 0.1 and ArcFace m 0.2 at s 16 reached 99.54% and 99.52% where the papers' values after
# 3 epochs were at 51.3% and 16.0%; on a 4,000-image subset, 6 epochs, CosFace 0.1/16 86.9%
# against 0.35/64's 70.2%. SphereFace's m 4, s 64 trained in 2-D (99.09% in 6 epochs) and stays.
NARROW_DIM = 2
NARROW_MARGIN = {"sphereface": 4.0, "cosface": 0.1, "arcface": 0.2}
NARROW_SCALE = {"sphereface": 64.0, "cosface": 16.0, "arcface": 16.0}
# Margins that keep the target's logit a decreasing function of theta on [0, pi] (arcface: with
# the fallback below) and the scale in a range where fp32 softmax neither vanishes nor overflows.
MARGIN_RANGE = {"sphereface": (1.0, 8.0), "cosface": (0.0, 1.0), "arcface": (0.0, math.pi / 2)}
SCALE_RANGE = (1.0, 128.0)


def check_head(head: str, margin: float | None, scale: float | None) -> None:
    """OptionError with a one-line message if the head or its settings are out of range."""
    if head not in HEADS:
        raise OptionError(f"unknown head {head!r}; choose one of: {', '.join(HEADS)}")
    if head == "softmax":
        if margin is not None or scale is not None:
            raise OptionError("--margin and --scale apply to the margin heads; pass --head "
                             "sphereface, cosface or arcface, or drop them")
        return
    lo, hi = MARGIN_RANGE[head]
    if margin is None or not lo <= margin <= hi or (head == "sphereface" and margin != int(margin)):
        kind = "an integer" if head == "sphereface" else "a number"
        raise OptionError(f"--margin for {head} must be {kind} in [{lo:g}, {hi:g}] "
                         f"(the paper's: {DEFAULT_MARGIN[head]:g}), got {margin}")
    if scale is None or not SCALE_RANGE[0] <= scale <= SCALE_RANGE[1]:
        raise OptionError(f"--scale must be in [{SCALE_RANGE[0]:g}, {SCALE_RANGE[1]:g}] "
                         f"(the papers': {DEFAULT_SCALE:g}), got {scale}")


def head_defaults(head: str, feature_dim: int) -> tuple[float, float]:
    """(margin, scale) of a margin head left to its defaults: the paper's, or for features of at
    most NARROW_DIM dimensions the smaller ones that such features can meet."""
    if feature_dim <= NARROW_DIM:
        return NARROW_MARGIN[head], NARROW_SCALE[head]
    return DEFAULT_MARGIN[head], DEFAULT_SCALE


def defaults_rule(what: str) -> str:
    """The default margins or scales in words, for --margin's and --scale's help."""
    paper, narrow = (DEFAULT_MARGIN, NARROW_MARGIN) if what == "margin" else (
        dict.fromkeys(ANGULAR_HEADS, DEFAULT_SCALE), NARROW_SCALE)
    said = ", ".join(f"{h} {paper[h]:g}" for h in ANGULAR_HEADS)
    changed = ", ".join(f"{h} {narrow[h]:g}" for h in ANGULAR_HEADS if narrow[h] != paper[h])
    return (f"[default: the papers': {said}; with features of {NARROW_DIM} dimensions or fewer, "
            f"which cannot meet the papers' margins: {changed}]")


def is_angular(head: str) -> bool:
    return head in ANGULAR_HEADS
