"""Classifier heads: softmax (the paper's), and the margin heads that followed center loss.

    softmax     logits W x (a Linear without bias, as in Wen et al. 2016)
    sphereface  A-Softmax (Liu et al. 2017): target cos(theta) -> psi(theta), multiplicative m
    cosface     AM-Softmax / CosFace (Wang et al. 2018): target cos(theta) -> cos(theta) - m
    arcface     ArcFace (Deng et al. 2019): target cos(theta) -> cos(theta + m)

The margin heads normalise both the feature and every class weight, so a logit is
s * cos(theta), theta the angle between the feature and the class's weight. That is what their
forward returns, at training and at inference alike: the model still returns (features, logits),
argmax of the logits is the prediction, and softmax of them a calibrated-looking probability.
The margin is a training-only change to the target class's logit; it needs the labels, so it
lives in `training_loss`, which turns (logits, labels) into the cross-entropy that is trained.
Since the logits are s * cos(theta) exactly, cos(theta) is recovered as logits / s and the
gradient still flows through the model's own forward (what DDP and torch.compile see).

SphereFace is the normalised form (features normalised and scaled by s, as for the other two,
rather than scaled by the feature's own norm as in the paper), with the paper's annealing:
the target logit is (lambda cos(theta) + psi(theta)) / (1 + lambda), lambda =
max(5, 1000 / (1 + 0.12 * step)), the schedule of the authors' released training files. The step
counter is a buffer of the head, so it is saved with the weights and a resumed run goes on with
the right lambda."""
from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .errors import OptionError
from .options import HEADS     # the --head choices, listed with the option

ANGULAR_HEADS = HEADS[1:]
# The papers' margins and scale: A-Softmax m = 4; CosFace m = 0.35, s = 64; ArcFace m = 0.5,
# s = 64. SphereFace's paper scales by the feature norm; its normalised form uses s like the others.
DEFAULT_MARGIN = {"sphereface": 4.0, "cosface": 0.35, "arcface": 0.5}
DEFAULT_SCALE = 64.0
# Margins that keep the target's logit a decreasing function of theta on [0, pi] (arcface: with
# the fallback below) and the scale in a range where fp32 softmax neither vanishes nor overflows.
MARGIN_RANGE = {"sphereface": (1.0, 8.0), "cosface": (0.0, 1.0), "arcface": (0.0, math.pi / 2)}
SCALE_RANGE = (1.0, 128.0)
# SphereFace's annealing (the authors' released prototxt: base 1000, gamma 0.12, power 1, min 5)
ANNEAL_BASE, ANNEAL_GAMMA, ANNEAL_MIN = 1000.0, 0.12, 5.0
COS_EPS = 1e-6      # acos is clamped this far inside [-1, 1]: its gradient is infinite at the ends

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


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


def is_angular(head: str) -> bool:
    return head in ANGULAR_HEADS


class AngularHead(nn.Module):
    """s * cos(angle between the feature and each class weight); the margin is in training_loss.

    The weight has nn.Linear's shape [classes, features] and name, so every head's checkpoint
    keeps the key `classifier.weight`."""

    def __init__(self, feature_dim: int, num_classes: int, head: str, margin: float, scale: float):
        super().__init__()
        check_head(head, margin, scale)
        self.head, self.margin, self.scale = head, float(margin), float(scale)
        self.weight = nn.Parameter(torch.empty(num_classes, feature_dim))
        nn.init.normal_(self.weight)          # only its direction matters
        if head == "sphereface":
            self.register_buffer("step", torch.zeros((), dtype=torch.long))

    def cosine(self, x: torch.Tensor) -> torch.Tensor:
        # fp32 even under bf16 autocast: cos(theta) near 1 needs more than bf16's 8 bits,
        # acos and the margin amplify its error
        with torch.autocast(x.device.type, enabled=False):
            return F.linear(F.normalize(x.float(), dim=1), F.normalize(self.weight.float(), dim=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * self.cosine(x)

    def target_cosine(self, cos: torch.Tensor) -> torch.Tensor:
        """What the target class's cos(theta) becomes in training (before the scale)."""
        if self.head == "cosface":
            return cos - self.margin
        theta = torch.acos(cos.clamp(-1 + COS_EPS, 1 - COS_EPS))
        if self.head == "arcface":
            # past pi - m, cos(theta + m) would rise again with theta; ArcFace then uses
            # cos(theta) - m sin(m), which goes on falling, so the target still gains by turning
            # towards its class
            return torch.where(theta + self.margin <= math.pi, torch.cos(theta + self.margin),
                               cos - self.margin * math.sin(self.margin))
        m = self.margin
        k = torch.floor(m * theta.detach() / math.pi)
        psi = (1 - 2 * torch.remainder(k, 2)) * torch.cos(m * theta) - 2 * k   # (-1)^k cos(m theta) - 2k
        # a tensor, not a Python number: reading the step back would make the host wait
        lam = (ANNEAL_BASE / (1 + ANNEAL_GAMMA * self.step.float())).clamp(min=ANNEAL_MIN)
        return (lam * cos + psi) / (1 + lam)

    def training_logits(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The logits of forward with the margin applied to each sample's target class only."""
        logits = logits.float()
        target = labels.view(-1, 1)
        cos = logits.gather(1, target) / self.scale
        return logits.scatter(1, target, self.scale * self.target_cosine(cos))

    def training_loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """The cross-entropy that is trained: of the margined logits; counts SphereFace's steps."""
        loss = F.cross_entropy(self.training_logits(logits, labels), labels)
        if self.head == "sphereface":
            self.step += 1
        return loss


def build_head(head: str, feature_dim: int, num_classes: int, margin: float | None,
               scale: float | None) -> nn.Module:
    """The classifier layer of a model: a Linear without bias for softmax, else an AngularHead."""
    if head == "softmax":
        check_head(head, margin, scale)
        return nn.Linear(feature_dim, num_classes, bias=False)
    return AngularHead(feature_dim, num_classes, head, margin, scale)


def softmax_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.float(), labels)


def training_loss(model: nn.Module) -> Loss:
    """The cross-entropy a model trains with, from its (logits, labels); DDP's wrapper unwrapped."""
    head = getattr(model, "module", model).classifier
    return head.training_loss if isinstance(head, AngularHead) else softmax_loss
