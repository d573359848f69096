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

from centerloss.config.heads import check_head

# SphereFace's annealing (the authors' released prototxt: base 1000, gamma 0.12, power 1, min 5)
ANNEAL_BASE, ANNEAL_GAMMA, ANNEAL_MIN = 1000.0, 0.12, 5.0
COS_EPS = 1e-6      # acos is clamped this far inside [-1, 1]: its gradient is infinite at the ends

Loss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


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
