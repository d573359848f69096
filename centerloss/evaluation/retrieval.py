"""Retrieval and clustering figures of a feature space, as metric learning reports them (Musgrave,
Belongie, Lim, "A Metric Learning Reality Check", ECCV 2020), with the definitions of
pytorch-metric-learning's AccuracyCalculator:

- precision_at_1: the share of queries whose nearest other image is of their class;
- r_precision: with R the number of other images of the query's class, the share of its R
  nearest that are of its class;
- mean_average_precision_at_r (MAP@R): the mean over the R nearest of the precision at each
  rank that holds an image of the class, divided by R: R-precision that also rewards order;
- nmi, ami: the (adjusted) normalised mutual information between the classes and a k-means
  clustering of the features into as many clusters as there are classes.

Each query ranks all the other images of its split (leave-one-out), or a separate reference set
(a gallery, such as the training features). A query whose class has no other image there cannot
be scored and is left out, as the library does. Memory grows with images x feature size and
queries-per-chunk x reference images, never with images x images or classes x classes."""
from __future__ import annotations

import math

import torch

from centerloss.device.cpu import release_free_memory

DISTANCES = ("euclidean", "cosine")
CHUNK_ELEMENTS = 1 << 24       # query x reference distances held at once: 64 MB in fp32
KMEANS_ITERATIONS = 20         # Lloyd iterations at most, as the library's faiss k-means
EMI_TERMS = 1 << 22            # terms of the expected mutual information summed at once


def distance_for(angular: bool) -> str:
    """Euclidean for softmax and center loss, whose features cluster around centers; cosine for the
    margin heads, which train only the direction of a feature."""
    return "cosine" if angular else "euclidean"


def _distances(query: torch.Tensor, reference: torch.Tensor, distance: str) -> torch.Tensor:
    if distance == "cosine":     # 1 - cosine similarity: the same order, smallest first
        q = torch.nn.functional.normalize(query, dim=1)
        r = torch.nn.functional.normalize(reference, dim=1)
        return 1 - q @ r.T
    if distance == "euclidean":
        return torch.cdist(query, reference)
    raise ValueError(f"unknown distance {distance!r}; choose one of: {', '.join(DISTANCES)}")


def chunk_size(reference_images: int, budget: int = CHUNK_ELEMENTS) -> int:
    """Queries ranked at once, so that their distances to every reference image fit the budget."""
    return max(1, budget // max(1, reference_images))


@torch.no_grad()
def ranking_figures(query: torch.Tensor, query_labels: torch.Tensor,
                    reference: torch.Tensor | None = None, reference_labels: torch.Tensor | None = None,
                    distance: str = "euclidean", budget: int = CHUNK_ELEMENTS) -> dict:
    """precision_at_1, r_precision and mean_average_precision_at_r of the queries against the
    reference (None: each query against the other queries), with the queries scored, the lone
    ones left out, and k, the neighbours ranked per query (the largest R). A figure is None
    when no query can be scored."""
    leave_one_out = reference is None
    if leave_one_out:
        reference, reference_labels = query, query_labels
    query, reference = query.float(), reference.float().to(query.device)
    labels = torch.cat([query_labels.to(query.device), reference_labels.to(query.device)]).long()
    _, ids = torch.unique(labels, return_inverse=True)
    q_ids, r_ids = ids[:query_labels.shape[0]], ids[query_labels.shape[0]:]
    reference_counts = torch.bincount(r_ids, minlength=int(ids.max()) + 1 if ids.numel() else 0)
    relevant = reference_counts[q_ids] - int(leave_one_out)     # R of each query
    scored = relevant > 0
    queries, k = int(scored.sum()), int(relevant.max()) if relevant.numel() else 0
    out = {"precision_at_1": None, "r_precision": None, "mean_average_precision_at_r": None,
           "queries": queries, "lone_queries": int((~scored).sum()), "k": max(k, 0)}
    if queries == 0:
        return out
    sums = torch.zeros(3, dtype=torch.float64, device=query.device)
    step = chunk_size(reference.shape[0], budget)
    ranks = torch.arange(1, k + 1, device=query.device, dtype=torch.float64)
    for lo in range(0, query.shape[0], step):
        hi = min(lo + step, query.shape[0])
        keep = scored[lo:hi]
        if not keep.any():
            continue
        d = _distances(query[lo:hi][keep], reference, distance)
        if leave_one_out:       # a query is not its own neighbour
            rows = torch.arange(d.shape[0], device=d.device)
            d[rows, torch.arange(lo, hi, device=d.device)[keep]] = float("inf")
        # the k nearest as a set, then in order: much faster than topk's sorted mode
        near_d, nearest = torch.topk(d, k, dim=1, largest=False, sorted=False)
        nearest = nearest.gather(1, torch.argsort(near_d, dim=1, stable=True))
        del d, near_d
        r = relevant[lo:hi][keep].to(torch.float64)
        hit = r_ids[nearest] == q_ids[lo:hi][keep, None]
        within_r = hit & (ranks[None, :] <= r[:, None])
        hits_in_r = within_r.sum(1, dtype=torch.float64)
        precision_at_rank = torch.cumsum(within_r, 1, dtype=torch.float64) / ranks
        sums += torch.stack([hit[:, 0].sum(dtype=torch.float64), (hits_in_r / r).sum(),
                             ((precision_at_rank * within_r).sum(1) / r).sum()])
        del hit, within_r, precision_at_rank, nearest
        release_free_memory()    # glibc would keep the block's freed distances, fragmented
    p1, rp, mapr = (sums / queries).tolist()
    out.update(precision_at_1=p1, r_precision=rp, mean_average_precision_at_r=mapr)
    return out


@torch.no_grad()
def kmeans(x: torch.Tensor, clusters: int, seed: int = 0, iterations: int = KMEANS_ITERATIONS,
           budget: int = CHUNK_ELEMENTS) -> torch.Tensor:
    """The cluster of each row of x: k-means++ seeding (Arthur and Vassilvitskii 2007) from the
    seed, then Lloyd's iterations until no point moves, at most `iterations`. A cluster left
    empty keeps its center. Points x clusters distances are held a chunk of points at a time."""
    x = x.float()
    n = x.shape[0]
    clusters = max(1, min(clusters, n))
    g = torch.Generator(device="cpu").manual_seed(seed)
    chosen = torch.empty(clusters, dtype=torch.long)
    chosen[0] = int(torch.randint(n, (1,), generator=g))
    nearest_d2 = (x - x[chosen[0]]).pow(2).sum(1)
    for c in range(1, clusters):
        weights = nearest_d2.double().cpu()
        if float(weights.sum()) > 0:
            chosen[c] = int(torch.multinomial(weights, 1, generator=g))
        else:                   # fewer distinct points than clusters: any point will do
            chosen[c] = int(torch.randint(n, (1,), generator=g))
        nearest_d2 = torch.minimum(nearest_d2, (x - x[chosen[c]]).pow(2).sum(1))
    centers = x[chosen.to(x.device)].clone()
    assigned = torch.full((n,), -1, dtype=torch.long, device=x.device)
    step = chunk_size(clusters, budget)
    for _ in range(max(1, iterations)):
        # |x - c|^2 less |x|^2, which is the same for every c: one matrix product a chunk
        half_norms = centers.pow(2).sum(1) / 2
        new = torch.empty(n, dtype=torch.long, device=x.device)
        for lo in range(0, n, step):
            new[lo:lo + step] = (half_norms - x[lo:lo + step] @ centers.T).argmin(1)
            release_free_memory()
        if torch.equal(new, assigned):
            break
        assigned = new
        counts = torch.bincount(assigned, minlength=clusters)
        sums = torch.zeros_like(centers).index_add_(0, assigned, x)
        filled = counts > 0
        centers[filled] = sums[filled] / counts[filled, None].to(x.dtype)
    return assigned


def _sizes(labels: torch.Tensor) -> torch.Tensor:
    return torch.unique(labels, return_counts=True)[1].to(torch.float64)


def _entropy(sizes: torch.Tensor) -> float:
    p = sizes / sizes.sum()
    return float(-(p * p.log()).sum())


def mutual_information(a: torch.Tensor, b: torch.Tensor) -> float:
    """I(A; B) in nats of two labelings of the same items, from the non-empty cells of their
    contingency table only (at most one per item, never classes x clusters)."""
    a = torch.unique(a.long().cpu(), return_inverse=True)[1]
    b = torch.unique(b.long().cpu(), return_inverse=True)[1]
    n = a.shape[0]
    cells, cell_sizes = torch.unique(a * (int(b.max()) + 1) + b, return_counts=True)
    size_a = torch.bincount(a).to(torch.float64)[cells // (int(b.max()) + 1)]
    size_b = torch.bincount(b).to(torch.float64)[cells % (int(b.max()) + 1)]
    nij = cell_sizes.to(torch.float64)
    # N n_ij and a_i b_j are exact integers in float64, so independent labelings give exactly 0
    return max(0.0, float((nij / n * torch.log(nij * n / (size_a * size_b))).sum()))


def expected_mutual_information(a_sizes: torch.Tensor, b_sizes: torch.Tensor) -> float:
    """E[I(A; B)] over all labelings with these cluster sizes, drawn at random (the hypergeometric
    model of Vinh, Epps and Bailey, JMLR 2010):

        sum over clusters i of A, j of B, and n from max(1, a_i + b_j - N) to min(a_i, b_j) of
        n / N * log(N n / (a_i b_j)) * a_i! b_j! (N - a_i)! (N - b_j)! /
                                      (N! n! (a_i - n)! (b_j - n)! (N - a_i - b_j + n)!)

    The terms depend on the sizes alone, so clusters of equal size are summed once and weighted
    by how many there are: at most sqrt(2N) distinct sizes on each side."""
    a_sizes, b_sizes = a_sizes.to(torch.float64).cpu(), b_sizes.to(torch.float64).cpu()
    n = float(a_sizes.sum())
    av, ac = torch.unique(a_sizes, return_counts=True)
    bv, bc = torch.unique(b_sizes, return_counts=True)
    a = av[:, None].expand(-1, bv.shape[0]).reshape(-1)
    b = bv[None, :].expand(av.shape[0], -1).reshape(-1)
    weight = (ac[:, None] * bc[None, :]).reshape(-1).to(torch.float64)
    low = torch.clamp(a + b - n, min=1)
    terms = (torch.minimum(a, b) - low + 1).clamp(min=0).long()
    ends = torch.cumsum(terms, 0)
    lg = torch.lgamma
    fixed = lg(a + 1) + lg(b + 1) + lg(n - a + 1) + lg(n - b + 1) - math.lgamma(n + 1)
    total, start = 0.0, 0
    while start < a.shape[0]:      # pairs of sizes whose terms fit EMI_TERMS, at least one
        before = int(ends[start - 1]) if start else 0
        stop = max(start + 1, int(torch.searchsorted(ends, before + EMI_TERMS, right=True)))
        pair = torch.repeat_interleave(torch.arange(start, stop), terms[start:stop])
        if pair.numel():
            offset = torch.arange(pair.shape[0], dtype=torch.float64) - (ends[pair] - terms[pair] - before)
            nij = low[pair] + offset
            ai, bj = a[pair], b[pair]
            log_p = fixed[pair] - lg(nij + 1) - lg(ai - nij + 1) - lg(bj - nij + 1) - lg(n - ai - bj + nij + 1)
            total += float((weight[pair] * nij / n * torch.log(n * nij / (ai * bj)) * log_p.exp()).sum())
        start = stop
    return total


def nmi(a: torch.Tensor, b: torch.Tensor) -> float:
    """I(A; B) over the arithmetic mean of H(A) and H(B); 1 when neither labeling splits the items."""
    sa, sb = _sizes(a), _sizes(b)
    if sa.shape[0] == sb.shape[0] == 1:
        return 1.0
    mi = mutual_information(a, b)
    if mi == 0:
        return 0.0
    return mi / ((_entropy(sa) + _entropy(sb)) / 2)


def ami(a: torch.Tensor, b: torch.Tensor) -> float:
    """(I - E[I]) / (mean(H(A), H(B)) - E[I]): 0 for labelings as alike as chance makes them, 1 for
    the same partition; 1 when neither labeling splits the items."""
    sa, sb = _sizes(a), _sizes(b)
    if sa.shape[0] == sb.shape[0] == 1:
        return 1.0
    emi = expected_mutual_information(sa, sb)
    denominator = (_entropy(sa) + _entropy(sb)) / 2 - emi
    eps = torch.finfo(torch.float64).eps       # the same partition makes this 0 / 0
    denominator = min(denominator, -eps) if denominator < 0 else max(denominator, eps)
    return (mutual_information(a, b) - emi) / denominator


def clustering_figures(features: torch.Tensor, labels: torch.Tensor, seed: int = 0) -> dict:
    """nmi and ami between the classes and a k-means clustering of the features into as many
    clusters as there are classes among them."""
    classes = int(torch.unique(labels).shape[0])
    clusters = kmeans(features, classes, seed).cpu()
    labels = labels.cpu()
    return {"nmi": nmi(labels, clusters), "ami": ami(labels, clusters)}


def retrieval_figures(features: torch.Tensor, labels: torch.Tensor, distance: str,
                      reference: torch.Tensor | None = None, reference_labels: torch.Tensor | None = None,
                      seed: int = 0) -> dict:
    """Every retrieval and clustering figure of these features (queries), against the reference
    when one is given and leave-one-out otherwise; the clustering is of the queries alone."""
    out = {"distance": distance, "reference": "leave-one-out" if reference is None else "reference"}
    out.update(ranking_figures(features, labels, reference, reference_labels, distance))
    out.update(clustering_figures(features, labels, seed))
    return out
