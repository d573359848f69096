"""What a trained feature space is worth: accuracy, nearest-center accuracy, compactness, confusion.

Nothing here holds a classes x classes matrix whole: with 20,000 identities one would take 3 GB.
Pairs of centers are measured a block of rows at a time, and the confusion matrix is kept only
up to CONFUSION_CLASSES classes; above that, the most confused pairs."""
from __future__ import annotations

import torch

from centerloss.device.cpu import release_free_memory

CONFUSION_CLASSES = 100     # the widest confusion matrix a report keeps (100 x 100 counts)
MOST_CONFUSED = 20          # pairs of classes a report lists instead, above that
BLOCK_ELEMENTS = 1 << 22    # class pairs measured at once (16 MB in fp32)


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return (logits.argmax(1) == labels).float().mean().item()


def nearest_center(features: torch.Tensor, centers: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(index, Euclidean distance) of each feature's nearest center, a block of features at a time."""
    f, c = features.float(), centers.float()
    step = max(1, BLOCK_ELEMENTS // max(1, c.shape[0]))
    idx = torch.empty(f.shape[0], dtype=torch.long, device=f.device)
    d = torch.empty(f.shape[0], device=f.device)
    for lo in range(0, f.shape[0], step):
        d[lo:lo + step], idx[lo:lo + step] = torch.cdist(f[lo:lo + step], c).min(1)
        release_free_memory()    # the block's distances: glibc would keep them, fragmented
    return idx, d


def nearest_center_accuracy(features: torch.Tensor, centers: torch.Tensor, labels: torch.Tensor) -> float:
    """Accuracy of classifying each feature by its nearest center: high only when the classes
    form clusters around their centers, which is what center loss is for."""
    return (nearest_center(features, centers)[0] == labels).float().mean().item()


def confusion(pred: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """[true, predicted] counts: num_classes squared of them, so for few classes only."""
    flat = labels.long() * num_classes + pred.long()
    return torch.bincount(flat, minlength=num_classes ** 2).reshape(num_classes, num_classes)


def most_confused(pred: torch.Tensor, labels: torch.Tensor, num_classes: int,
                  top: int = MOST_CONFUSED) -> list[tuple[int, int, int]]:
    """(true, predicted, count) of the `top` most frequent mistakes, most frequent first (then by
    class), from the mistakes alone: memory grows with the images, not with classes squared."""
    wrong = pred != labels
    flat = labels[wrong].long() * num_classes + pred[wrong].long()
    cells, counts = torch.unique(flat, return_counts=True)      # sorted by cell
    order = torch.argsort(counts, descending=True, stable=True)[:top]
    return [(int(c) // num_classes, int(c) % num_classes, int(n))
            for c, n in zip(cells[order].tolist(), counts[order].tolist())]


def _mean_over_pairs(rows: torch.Tensor, measure) -> torch.Tensor:
    """Mean of measure(a, b) (block x all rows) over ordered pairs of distinct rows, a block of
    rows at a time; a row with itself is left out (rounding would make it a little above 0)."""
    k = rows.shape[0]
    if k < 2:
        return torch.zeros((), device=rows.device)
    step = max(1, BLOCK_ELEMENTS // k)
    total = torch.zeros((), dtype=torch.float64, device=rows.device)
    for lo in range(0, k, step):
        block = measure(rows[lo:lo + step], rows)
        n = block.shape[0]
        block[torch.arange(n, device=rows.device), torch.arange(lo, lo + n, device=rows.device)] = 0
        total += block.double().sum()
        del block
        release_free_memory()
    return total / (k * (k - 1))


def compactness(features: torch.Tensor, centers: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
    """Mean distance of a feature to its own class center (intra), mean distance between two
    centers (inter), and intra / inter: the smaller the ratio, the tighter and farther apart."""
    f = features.float()
    intra = (f - centers[labels].float()).norm(dim=1).mean().item()
    inter = _mean_over_pairs(centers.float(), torch.cdist).item()
    return {"intra": intra, "inter": inter, "ratio": intra / inter if inter > 0 else float("inf")}


def angular_compactness(features: torch.Tensor, directions: torch.Tensor, labels: torch.Tensor) -> float:
    """Mean angle between a feature and its class's direction (its classifier weight) over the
    mean angle between two class directions: compactness as a margin head sees it, by angle
    alone, whatever the feature norms. It applies to softmax too (its classes split by angle)."""
    unit = torch.nn.functional.normalize
    f, w = unit(features.float(), dim=1), unit(directions.float(), dim=1)
    intra = torch.acos((f * w[labels]).sum(1).clamp(-1, 1)).mean()
    inter = _mean_over_pairs(w, lambda a, b: torch.acos((a @ b.T).clamp(-1, 1)))
    return (intra / inter).item() if inter > 0 else float("inf")


def summarize(features: torch.Tensor, pred: torch.Tensor, labels: torch.Tensor, centers: torch.Tensor,
              classes: tuple[str, ...] | list[str]) -> dict:
    """Every classification figure `cl eval` reports, as plain Python numbers. Up to
    CONFUSION_CLASSES classes, the accuracy of each class and the confusion matrix; above that,
    the MOST_CONFUSED most frequent mistakes, so that the report stays small."""
    k = len(classes)
    comp = compactness(features, centers, labels)
    report = {
        "accuracy": (pred == labels).float().mean().item(),
        "nearest_center_accuracy": nearest_center_accuracy(features, centers, labels),
        "intra_distance": comp["intra"],
        "inter_distance": comp["inter"],
        "compactness": comp["ratio"],
        "samples": int(labels.shape[0]),
        "classes": k,
    }
    if k <= CONFUSION_CLASSES:
        conf = confusion(pred, labels, k)
        per_class = (conf.diag().float() / conf.sum(1).clamp(min=1).float()).tolist()
        report.update(per_class_accuracy=dict(zip(classes, per_class)), confusion=conf.tolist())
    else:
        report["most_confused"] = [{"true": classes[t], "predicted": classes[p], "count": n}
                                   for t, p, n in most_confused(pred, labels, k)]
    return report
