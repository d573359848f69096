"""What a trained feature space is worth: accuracy, nearest-center accuracy, compactness, confusion."""
from __future__ import annotations

import torch


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return (logits.argmax(1) == labels).float().mean().item()


def nearest_center(features: torch.Tensor, centers: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(index, Euclidean distance) of each feature's nearest center."""
    dist = torch.cdist(features.float(), centers.float())
    d, idx = dist.min(1)
    return idx, d


def nearest_center_accuracy(features: torch.Tensor, centers: torch.Tensor, labels: torch.Tensor) -> float:
    """Accuracy of classifying each feature by its nearest center: high only when the classes
    form clusters around their centers, which is what center loss is for."""
    return (nearest_center(features, centers)[0] == labels).float().mean().item()


def confusion(pred: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """[true, predicted] counts."""
    flat = labels.long() * num_classes + pred.long()
    return torch.bincount(flat, minlength=num_classes ** 2).reshape(num_classes, num_classes)


def compactness(features: torch.Tensor, centers: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Mean distance of a feature to its own class center (intra), mean distance between two
    centers (inter), and intra / inter: the smaller the ratio, the tighter and farther apart."""
    f = features.float()
    intra = (f - centers[labels].float()).norm(dim=1).mean().item()
    c = centers.float()
    k = c.shape[0]
    pair = torch.cdist(c, c)
    inter = (pair.sum() / (k * (k - 1))).item() if k > 1 else 0.0
    return {"intra": intra, "inter": inter, "ratio": intra / inter if inter > 0 else float("inf")}


def angular_compactness(features: torch.Tensor, directions: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean angle between a feature and its class's direction (its classifier weight) over the
    mean angle between two class directions: compactness as a margin head sees it, by angle
    alone, whatever the feature norms. It applies to softmax too (its classes split by angle)."""
    unit = torch.nn.functional.normalize
    f, w = unit(features.float(), dim=1), unit(directions.float(), dim=1)
    intra = torch.acos((f * w[labels]).sum(1).clamp(-1, 1)).mean()
    k = w.shape[0]
    pair = torch.acos((w @ w.T).clamp(-1, 1))
    inter = pair.sum() / (k * (k - 1)) if k > 1 else torch.zeros(())
    return (intra / inter).item() if inter > 0 else float("inf")


def summarize(features: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor, centers: torch.Tensor,
              classes: tuple[str, ...] | list[str]) -> dict:
    """Every figure `cl eval` reports, as plain Python numbers."""
    pred = logits.argmax(1)
    k = len(classes)
    conf = confusion(pred, labels, k)
    per_class = (conf.diag().float() / conf.sum(1).clamp(min=1).float()).tolist()
    comp = compactness(features, centers, labels)
    return {
        "accuracy": accuracy(logits, labels),
        "nearest_center_accuracy": nearest_center_accuracy(features, centers, labels),
        "per_class_accuracy": dict(zip(classes, per_class)),
        "confusion": conf.tolist(),
        "intra_distance": comp["intra"],
        "inter_distance": comp["inter"],
        "compactness": comp["ratio"],
        "samples": int(labels.shape[0]),
    }
