"""Center loss (Wen, Zhang, Li, Qiao, ECCV 2016): the loss and the center update of Eq. 4."""
from __future__ import annotations

import torch
from torch import nn


def _at_least_fp32(x: torch.Tensor) -> torch.Tensor:
    """bf16/fp16 features are summed in fp32; fp64 stays fp64."""
    return x.to(torch.promote_types(x.dtype, torch.float32))


class CenterLoss(nn.Module):
    """L_C = 1/(2m) * sum_i ||x_i - c_{y_i}||^2 over a batch of m features.

    Averaged over the batch so that lambda keeps its meaning at any batch size; squared distance,
    no sqrt (whose gradient is infinite at 0). The centers are a buffer, not a parameter: no
    optimizer touches them and they never see weight decay. In training mode each call also
    moves the centers by Eq. 4,

        delta c_j = sum_{i: y_i = j} (c_j - x_i) / (1 + n_j),   c_j <- c_j - alpha * delta c_j,

    computed from the features of this call (detached, fp32) and the centers as they were before
    it, like BatchNorm's running statistics. The gradient that reaches the features is
    (x_i - c_{y_i}) / m; multiply the loss by lambda in the joint objective L_S + lambda * L_C.

        center_loss = CenterLoss(num_classes=10, feature_dim=2)
        loss = F.cross_entropy(logits, y) + 0.1 * center_loss(features, y)

    Under DistributedDataParallel pass the process group: the per-class sums and counts of Eq. 4
    are then all-reduced across ranks (one collective per step, queued on the device like DDP's
    own, no host sync), so every rank applies the update of the combined batch and the centers
    stay identical everywhere. Without a group nothing changes.
    """

    def __init__(self, num_classes: int, feature_dim: int, alpha: float = 0.5,
                 process_group: "torch.distributed.ProcessGroup | None" = None):
        super().__init__()
        if not 0 < alpha <= 1:
            raise ValueError(f"alpha must be in (0, 1], got {alpha}")
        self.num_classes = num_classes
        self.alpha = alpha
        self.process_group = process_group
        self.register_buffer("centers", torch.zeros(num_classes, feature_dim))

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        x = _at_least_fp32(features)
        diff = x - self.centers.index_select(0, labels)
        loss = 0.5 * diff.pow(2).sum() / x.shape[0]
        if self.training:
            self.center_update(x, labels)
        return loss

    @torch.no_grad()
    def center_update(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        """Eq. 4 with a one-hot mask: deterministic (a matmul, no scatter-add) and free of host
        syncs. A class absent from the batch has n_j = 0 and sum 0, so it stays put."""
        x = _at_least_fp32(features.detach())
        with torch.autocast(x.device.type, enabled=False):  # the sums stay fp32 under bf16 training
            mask = nn.functional.one_hot(labels, self.num_classes).to(x.dtype)   # [m, C]
            counts = mask.sum(0).unsqueeze(1)                                    # [C, 1]
            sums = mask.t() @ x                                                  # [C, D]
            if self.process_group is not None:
                stats = torch.cat([sums, counts], 1)      # one all-reduce for both
                torch.distributed.all_reduce(stats, group=self.process_group)
                sums, counts = stats[:, :-1], stats[:, -1:]
        delta = (counts * self.centers - sums) / (1.0 + counts)
        self.centers.sub_(self.alpha * delta)

    def extra_repr(self) -> str:
        c, d = self.centers.shape
        return f"num_classes={c}, feature_dim={d}, alpha={self.alpha}"
