"""Face-style verification: are two images of the same class (identity) or not?

A pair's score is the cosine similarity of its two features, or minus their Euclidean distance:
higher always means more alike. From the scores of pairs known to match or not come the ROC
curve, its area, the equal error rate, the true accept rate at a fixed false accept rate, and
LFW's 10-fold accuracy (the threshold is chosen on nine folds and scored on the tenth). Plain
torch in float64; no scikit-learn."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from centerloss.errors import OptionError, VerificationError

METRICS = ("cosine", "euclidean")
FARS = (1e-3, 1e-2)
FEW_IMPOSTORS = 10   # a TAR at a FAR that admits fewer impostor pairs than this moves with each one


def pair_scores(a: torch.Tensor, b: torch.Tensor, metric: str = "cosine") -> torch.Tensor:
    """float64 [P] scores of P pairs of features a[i], b[i]; higher is more alike."""
    a, b = a.double(), b.double()
    if metric == "cosine":
        return torch.nn.functional.cosine_similarity(a, b, dim=1, eps=1e-12)
    if metric == "euclidean":
        return -(a - b).norm(dim=1)
    raise OptionError(f"unknown metric {metric!r}; choose one of: {', '.join(METRICS)}")


def roc(scores: torch.Tensor, same: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(false accept rates, true accept rates, thresholds), one point per distinct score from the
    highest down, after a first point (0, 0) at threshold +inf. A pair is accepted when its score
    is >= the threshold, so tied scores enter together."""
    scores, same = scores.double().cpu(), same.bool().cpu()
    positives, negatives = int(same.sum()), int((~same).sum())
    if positives == 0 or negatives == 0:
        raise VerificationError(f"verification needs matching and non-matching pairs, got "
                         f"{positives} and {negatives}")
    order = torch.argsort(scores, descending=True, stable=True)
    s, y = scores[order], same[order].double()
    tp, fp = torch.cumsum(y, 0), torch.cumsum(1 - y, 0)
    last = torch.ones_like(s, dtype=torch.bool)      # the last position of each run of ties
    last[:-1] = s[1:] != s[:-1]
    zero = torch.zeros(1, dtype=torch.float64)
    fpr = torch.cat([zero, fp[last] / negatives])
    tpr = torch.cat([zero, tp[last] / positives])
    thresholds = torch.cat([torch.tensor([float("inf")], dtype=torch.float64), s[last]])
    return fpr, tpr, thresholds


def auc(fpr: torch.Tensor, tpr: torch.Tensor) -> float:
    """Area under the ROC curve by the trapezoid rule: the chance that a matching pair outscores
    a non-matching one, ties counted as half."""
    return float(torch.trapezoid(tpr, fpr))


def eer(fpr: torch.Tensor, tpr: torch.Tensor) -> float:
    """Equal error rate: where the false accept rate meets the false reject rate (1 - TAR),
    interpolated linearly between the two ROC points around the crossing."""
    gap = fpr - (1 - tpr)                     # rises from -1 at (0, 0) to +1 at (1, 1)
    k = int(torch.nonzero(gap >= 0)[0])
    if gap[k] == 0:
        return float(fpr[k])
    t = gap[k - 1] / (gap[k - 1] - gap[k])
    return float(fpr[k - 1] + t * (fpr[k] - fpr[k - 1]))


def tar_at_far(fpr: torch.Tensor, tpr: torch.Tensor, far: float) -> float:
    """The highest true accept rate of any threshold whose false accept rate is at most far:
    no interpolation, so the figure is one a real threshold achieves."""
    return float(tpr[fpr <= far + 1e-12].max())


def fold_ids(same: torch.Tensor, folds: int) -> torch.Tensor:
    """Fold of each pair: the matching pairs in list order cut into `folds` equal runs, and the
    non-matching ones too. For LFW's pairs.txt (10 sets of 300 matching then 300 non-matching
    pairs) these are exactly its ten official folds."""
    same = same.bool().cpu()
    ids = torch.empty(same.shape[0], dtype=torch.int64)
    for group in (same, ~same):
        where = torch.nonzero(group).squeeze(1)
        ids[where] = torch.arange(where.shape[0]) * folds // max(1, where.shape[0])
    return ids


def best_threshold(scores: torch.Tensor, same: torch.Tensor) -> float:
    """The threshold (accept when score >= it) with the highest accuracy on these pairs, placed
    midway between two neighbouring distinct scores; the lowest such one on ties."""
    s, order = torch.sort(scores.double())
    y = same.bool()[order]
    n = s.shape[0]
    # cut j: the j lowest scores are rejected, the rest accepted
    rejected_negatives = torch.cat([torch.zeros(1), torch.cumsum((~y).double(), 0)])
    accepted_positives = int(y.sum()) - torch.cat([torch.zeros(1), torch.cumsum(y.double(), 0)])
    correct = rejected_negatives + accepted_positives
    valid = torch.ones(n + 1, dtype=torch.bool)
    valid[1:n] = s[1:] != s[:-1]              # a cut inside a run of ties is no threshold
    j = int(torch.argmax(torch.where(valid, correct, torch.full_like(correct, -1.0))))
    if j == 0:
        return float("-inf")
    if j == n:
        return float("inf")
    return float((s[j - 1] + s[j]) / 2)


def kfold_accuracy(scores: torch.Tensor, same: torch.Tensor, folds: int = 10
                   ) -> tuple[float, float, list[float]]:
    """LFW's protocol: for each fold, the best threshold on the other folds, scored on it.
    Returns (mean accuracy, its standard deviation over the folds, the thresholds)."""
    scores, same = scores.double().cpu(), same.bool().cpu()
    if folds < 2:
        raise OptionError(f"k-fold accuracy needs at least 2 folds, got {folds}")
    fewest = min(int(same.sum()), int((~same).sum()))
    if folds > fewest:   # a fold without both kinds has no threshold worth the name (-inf)
        raise VerificationError(f"--folds {folds} is more than the {fewest} pairs of the scarcer kind "
                         f"(matching or not); every fold needs both: use --folds {max(2, fewest)} "
                         f"or fewer, or more pairs")
    ids = fold_ids(same, folds)
    accuracies, thresholds = [], []
    for f in range(folds):
        test = ids == f
        if not test.any():
            continue
        t = best_threshold(scores[~test], same[~test])
        accuracies.append(float(((scores[test] >= t) == same[test]).double().mean()))
        thresholds.append(t)
    acc = torch.tensor(accuracies, dtype=torch.float64)
    return float(acc.mean()), float(acc.std(unbiased=False)), thresholds


@dataclass
class Verification:
    summary: dict                             # plain numbers, as cl eval reports them
    fpr: torch.Tensor = field(repr=False)
    tpr: torch.Tensor = field(repr=False)


def verify_scores(scores: torch.Tensor, same: torch.Tensor, folds: int = 10) -> Verification:
    """Every verification figure of scored pairs."""
    fpr, tpr, _ = roc(scores, same)
    accuracy, accuracy_std, thresholds = kfold_accuracy(scores, same, folds)
    negatives = int((~same.bool()).sum())
    summary = {
        "pairs": int(same.shape[0]), "matching": int(same.bool().sum()), "non_matching": negatives,
        "auc": auc(fpr, tpr), "eer": eer(fpr, tpr),
        # with n non-matching pairs the smallest false accept rate above zero is 1 / n
        "tar_at_far": {f"{far:g}": tar_at_far(fpr, tpr, far) for far in FARS},
        "far_resolution": 1.0 / negatives,
        "accuracy": accuracy, "accuracy_std": accuracy_std, "folds": folds,
        "threshold": sum(thresholds) / len(thresholds),
    }
    return Verification(summary, fpr, tpr)


def draw_pairs(labels: torch.Tensor, n_pairs: int, seed: int = 0, queries: int | None = None
               ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(index a, index b, same) of n_pairs pairs, half matching and half not, in shuffled order.

    A matching pair is an image of a class with two or more, and another image of that class; a
    non-matching pair is any image and one of another class, each uniform. Drawn on the CPU from
    the seed alone, so the same labels always give the same pairs. With `queries`, every pair's
    first image is one of the first `queries` (the test images before a gallery's)."""
    labels = labels.long().cpu()
    n = labels.shape[0]
    counts = torch.bincount(labels)
    g = torch.Generator().manual_seed(seed)
    order = torch.argsort(labels, stable=True)        # the images of each class side by side
    by_class = labels[order]
    starts = torch.cumsum(counts, 0) - counts
    is_query = order < (n if queries is None else queries)       # sorted positions of queries
    eligible = torch.nonzero((counts[by_class] >= 2) & is_query).squeeze(1)
    query_positions = torch.nonzero(is_query).squeeze(1)
    if eligible.numel() == 0 or int((counts > 0).sum()) < 2:
        raise VerificationError("drawing pairs needs a class with two images and at least two classes")
    n_same = n_pairs // 2
    n_diff = n_pairs - n_same
    a = eligible[torch.randint(eligible.numel(), (n_same,), generator=g)]
    c = by_class[a]
    others = counts[c] - 1                            # the other images of a's class
    step = 1 + (torch.rand(n_same, generator=g, dtype=torch.float64) * others).long().clamp(max=others - 1)
    b = starts[c] + (a - starts[c] + step) % counts[c]
    a2 = query_positions[torch.randint(query_positions.numel(), (n_diff,), generator=g)]
    c2 = by_class[a2]
    outside = n - counts[c2]                          # images of every other class
    r = (torch.rand(n_diff, generator=g, dtype=torch.float64) * outside).long().clamp(max=outside - 1)
    b2 = torch.where(r < starts[c2], r, r + counts[c2])
    ia, ib = order[torch.cat([a, a2])], order[torch.cat([b, b2])]
    same = torch.cat([torch.ones(n_same, dtype=torch.bool), torch.zeros(n_diff, dtype=torch.bool)])
    shuffle = torch.randperm(n_pairs, generator=g)
    return ia[shuffle], ib[shuffle], same[shuffle]


def verify_features(features: torch.Tensor, labels: torch.Tensor, pairs: int = 6000, seed: int = 0,
                    metric: str = "cosine", folds: int = 10, queries: int | None = None) -> Verification:
    """Verification on pairs drawn (with the seed) from labelled features, such as the held-out
    test split's: 6000 pairs by default, as many as LFW's ten folds. With `queries`, each pair
    starts with one of the first `queries` features (test images, before a gallery's)."""
    ia, ib, same = draw_pairs(labels, pairs, seed, queries)
    f = features.cpu()
    return verify_scores(pair_scores(f[ia], f[ib], metric), same, folds)
