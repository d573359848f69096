"""Retrieval and clustering figures: by hand on tiny cases, chunking that changes nothing, and the
same numbers as pytorch-metric-learning's AccuracyCalculator (and scikit-learn's NMI and AMI)
when those are installed."""
from __future__ import annotations

import itertools
import json
import math

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from centerloss.evaluation import metrics, retrieval as R
from cli.main import app

FIGURES = ("precision_at_1", "r_precision", "mean_average_precision_at_r")


def clustered(n: int = 600, classes: int = 12, dim: int = 4, spread: float = 0.9, seed: int = 0):
    """Features of uneven classes around random centers, close enough to overlap."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, classes, (n,), generator=g) // torch.randint(1, 3, (n,), generator=g)
    centers = torch.randn(classes, dim, generator=g) * 2
    return centers[labels] + spread * torch.randn(n, dim, generator=g), labels


def test_ranking_by_hand():
    # on a line: a0=0, a1=1, b0=1.4, a2=5, b1=5.5
    x = torch.tensor([[0.0], [1.0], [1.4], [5.0], [5.5]])
    y = torch.tensor([0, 0, 1, 0, 1])
    out = R.ranking_figures(x, y)
    # nearest other: a0->a1 yes, a1->b0 no, b0->a1 no, a2->b1 no, b1->a2 no
    assert out["precision_at_1"] == pytest.approx(1 / 5)
    # R = 2 for a's (ranks: a0: a1,b0 -> 1/2; a1: b0,a0 -> 1/2; a2: b1,b0 -> 0), R = 1 for b's (0, 0)
    assert out["r_precision"] == pytest.approx((0.5 + 0.5 + 0 + 0 + 0) / 5)
    # AP@R: a0: hit at rank 1 -> (1/1)/2; a1: hit at rank 2 -> (1/2)/2; the rest 0
    assert out["mean_average_precision_at_r"] == pytest.approx((0.5 + 0.25) / 5)
    assert (out["queries"], out["lone_queries"], out["k"]) == (5, 0, 2)


def test_lone_queries_are_left_out_and_none_when_all_are():
    x = torch.tensor([[0.0], [0.1], [9.0]])
    out = R.ranking_figures(x, torch.tensor([0, 0, 1]))
    assert (out["queries"], out["lone_queries"]) == (2, 1)
    assert out["precision_at_1"] == 1.0
    alone = R.ranking_figures(x, torch.tensor([0, 1, 2]))
    assert alone["queries"] == 0 and alone["precision_at_1"] is None
    # the same queries against a gallery that holds their classes
    gallery = R.ranking_figures(x, torch.tensor([0, 1, 2]), x + 0.01, torch.tensor([0, 1, 2]))
    assert gallery["precision_at_1"] == 1.0 and gallery["lone_queries"] == 0


@pytest.mark.parametrize("distance", R.DISTANCES)
def test_chunks_change_nothing(distance):
    x, y = clustered()
    whole = R.ranking_figures(x, y, distance=distance, budget=10 ** 9)
    for budget in (1, 997, 20_000):      # one query at a time, uneven chunks
        part = R.ranking_figures(x, y, distance=distance, budget=budget)
        for key in FIGURES:
            assert part[key] == pytest.approx(whole[key], abs=1e-12)


def test_cosine_ignores_the_norm_and_euclidean_does_not():
    x, y = clustered(dim=3)
    scale = torch.rand(x.shape[0], 1, generator=torch.Generator().manual_seed(1)) * 10 + 0.1
    cos, cos_scaled = (R.ranking_figures(v, y, distance="cosine") for v in (x, x * scale))
    assert cos["mean_average_precision_at_r"] == pytest.approx(cos_scaled["mean_average_precision_at_r"])
    euc, euc_scaled = (R.ranking_figures(v, y) for v in (x, x * scale))
    assert euc["mean_average_precision_at_r"] != pytest.approx(euc_scaled["mean_average_precision_at_r"])


def test_kmeans_finds_separate_clusters_and_is_seeded():
    x, y = clustered(n=400, classes=5, spread=0.05)
    a = R.kmeans(x, 5, seed=3, budget=100)
    assert R.nmi(y, a) == pytest.approx(1.0) and R.ami(y, a) == pytest.approx(1.0)
    assert torch.equal(a, R.kmeans(x, 5, seed=3))
    assert R.kmeans(torch.zeros(6, 2), 4).max() < 4        # fewer distinct points than clusters


def brute_force_emi(a: torch.Tensor, b: torch.Tensor) -> float:
    """The expected mutual information summed over every pair of clusters, term by term."""
    n = int(a.sum())
    lf = lambda v: math.lgamma(v + 1)  # noqa: E731
    total = 0.0
    for ai, bj in itertools.product(a.tolist(), b.tolist()):
        for nij in range(max(1, int(ai + bj - n)), int(min(ai, bj)) + 1):
            p = math.exp(lf(ai) + lf(bj) + lf(n - ai) + lf(n - bj) - lf(n) - lf(nij) - lf(ai - nij)
                         - lf(bj - nij) - lf(n - ai - bj + nij))
            total += nij / n * math.log(n * nij / (ai * bj)) * p
    return total


def test_expected_mutual_information_grouped_by_size_is_the_full_sum():
    a = torch.tensor([5, 5, 3, 1, 5, 11])
    b = torch.tensor([4, 4, 4, 7, 2, 9])
    assert R.expected_mutual_information(a, b) == pytest.approx(brute_force_emi(a, b), rel=1e-10)


def test_nmi_ami_limits():
    y = torch.arange(40) % 4
    assert R.nmi(y, y) == pytest.approx(1.0) and R.ami(y, y) == pytest.approx(1.0)
    assert R.nmi(y, (y + 1) % 4) == pytest.approx(1.0)          # names of clusters do not matter
    assert R.nmi(y, torch.zeros(40)) == 0.0
    independent = (torch.arange(40) // 4) % 2                     # each class half in each cluster
    assert R.nmi(y, independent) == pytest.approx(0.0, abs=1e-12)
    assert R.ami(y, independent) < 0                              # worse than chance


def test_wide_class_sets_never_build_class_by_class_matrices():
    """20,000 classes: the pairwise center means a block at a time equal the whole matrix's on a
    subset, and the report lists the most confused pairs instead of a 20,000 x 20,000 matrix."""
    g = torch.Generator().manual_seed(0)
    c = torch.randn(300, 8, generator=g)
    whole = torch.cdist(c, c).sum() / (300 * 299)
    assert metrics._mean_over_pairs(c, torch.cdist).item() == pytest.approx(whole.item(), rel=1e-6)
    k = 20_000
    labels = torch.arange(2 * k) % k
    pred = labels.clone()
    pred[:30] = (labels[:30] + 1) % k
    pred[30:33] = 7                       # classes 30, 31, 32 mistaken for 7: one image each
    report = metrics.summarize(torch.randn(2 * k, 2, generator=g), pred, labels,
                               torch.randn(k, 2, generator=g), [f"id{i}" for i in range(k)])
    assert "confusion" not in report and report["classes"] == k
    assert len(report["most_confused"]) == metrics.MOST_CONFUSED
    assert report["most_confused"][0] == {"true": "id0", "predicted": "id1", "count": 1}
    assert report["accuracy"] == pytest.approx(1 - 33 / (2 * k))


# --- the same numbers as pytorch-metric-learning ---------------------------------------------

def reference_figures(query, query_labels, reference=None, reference_labels=None,
                      distance="euclidean", clusters=None):
    """AccuracyCalculator's figures, with its own k nearest neighbours (CustomKNN with its own
    distances) and, when given, these cluster labels for NMI and AMI."""
    pml = pytest.importorskip("pytorch_metric_learning")
    from pytorch_metric_learning.distances import CosineSimilarity, LpDistance
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator
    from pytorch_metric_learning.utils.inference import CustomKNN
    assert pml.__version__
    dist = CosineSimilarity() if distance == "cosine" else LpDistance(normalize_embeddings=False)
    include = FIGURES + (("NMI", "AMI") if clusters is not None else ())
    calc = AccuracyCalculator(include=include, k="max_bin_count", device=torch.device("cpu"),
                              knn_func=CustomKNN(dist), kmeans_func=lambda x, k: clusters)
    return calc.get_accuracy(query, query_labels, reference, reference_labels)


@pytest.mark.parametrize("distance", R.DISTANCES)
def test_same_figures_as_accuracy_calculator(distance):
    x, y = clustered(n=800, classes=15, dim=5, spread=1.2)
    clusters = R.kmeans(x, int(torch.unique(y).shape[0]))
    theirs = reference_figures(x, y, distance=distance, clusters=clusters)
    ours = R.ranking_figures(x, y, distance=distance, budget=50_000)
    for key in FIGURES:
        assert ours[key] == pytest.approx(theirs[key], abs=1e-4)
    # NMI and AMI of the same clustering: the formulas alone, so far tighter than 1e-4
    assert R.nmi(y, clusters) == pytest.approx(theirs["NMI"], abs=1e-9)
    assert R.ami(y, clusters) == pytest.approx(theirs["AMI"], abs=1e-9)
    # against the training set: the queries ranked against a separate gallery
    g, gy = clustered(n=500, classes=15, dim=5, spread=1.2, seed=0)
    gallery = g + 0.3 * torch.randn(g.shape, generator=torch.Generator().manual_seed(5))
    theirs = reference_figures(x[:300], y[:300], gallery, gy, distance=distance)
    ours = R.ranking_figures(x[:300], y[:300], gallery, gy, distance=distance, budget=7_000)
    for key in FIGURES:
        assert ours[key] == pytest.approx(theirs[key], abs=1e-4)


def test_kmeans_clusters_as_well_as_scikit_learn():
    """NMI and AMI depend on the clustering, so they can match only within k-means' own variation:
    ours against scikit-learn's k-means (k-means++, best of 10 starts) on overlapping classes."""
    cluster = pytest.importorskip("sklearn.cluster")
    x, y = clustered(n=1000, classes=10, dim=4, spread=0.8)
    theirs = torch.from_numpy(cluster.KMeans(10, n_init=10, random_state=0).fit_predict(x.numpy()))
    ours = R.kmeans(x, 10)
    assert R.nmi(y, ours) == pytest.approx(R.nmi(y, theirs), abs=0.05)
    assert R.ami(y, ours) == pytest.approx(R.ami(y, theirs), abs=0.05)


def test_cl_eval_reports_what_the_library_computes_on_cl_embed_features(runs, tmp_path):
    """cl embed's features of the test split, handed to AccuracyCalculator, give cl eval's figures
    (both in fp32: cl eval's default on a CPU with bf16 would rank slightly different features)."""
    pytest.importorskip("pytorch_metric_learning")
    run = runs["wide"]
    runner = CliRunner()
    emb = tmp_path / "test.safetensors"
    result = runner.invoke(app, ["embed", "--run", str(run), "--out", str(emb)])
    assert result.exit_code == 0, result.output
    tensors = load_file(emb)
    features, labels = tensors["features"], tensors["labels"]
    result = runner.invoke(app, ["eval", "--run", str(run), "--json", "--precision", "fp32"])
    assert result.exit_code == 0, result.output
    ours = json.loads(result.stdout)["retrieval"]
    assert ours["distance"] == "euclidean" and ours["reference"] == "test, leave-one-out"
    clusters = R.kmeans(features, 10)
    theirs = reference_figures(features, labels, clusters=clusters)
    for key in FIGURES:
        assert ours[key] == pytest.approx(theirs[key], abs=1e-4)
    assert ours["nmi"] == pytest.approx(theirs["NMI"], abs=1e-4)
    assert ours["ami"] == pytest.approx(theirs["AMI"], abs=1e-4)


def test_a_folder_of_two_images_per_identity_evaluates_against_the_train_split(tmp_path):
    """Two images per identity leave one test image each: leave-one-out has no query to score and
    --verify no matching pair (one-line error naming the fix); --reference train has both."""
    from support.cli import assert_one_line_error
    from support.data import make_folder
    data = make_folder(tmp_path / "faces", classes=12, per_class=2, size=8, rgb=False)
    out = tmp_path / "run"
    runner = CliRunner()
    result = runner.invoke(app, ["train", "--dataset", "folder", "--data-dir", str(data), "--model", "seed",
                                 "--image-size", "8", "--epochs", "1", "--batch-size", "4", "--device",
                                 "cpu", "--workers", "0", "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert history[-1]["precision_at_1"] is None and 0 <= history[-1]["nmi"] <= 1
    result = runner.invoke(app, ["eval", "--run", str(out), "--json", "--device", "cpu"])
    alone = json.loads(result.stdout)["retrieval"]
    assert alone["queries"] == 0 and alone["lone_queries"] == 12 and alone["precision_at_1"] is None
    result = runner.invoke(app, ["eval", "--run", str(out), "--device", "cpu"])
    assert result.exit_code == 0 and "n/a (no query has another image of its class" in result.output
    assert_one_line_error(runner.invoke(app, ["eval", "--run", str(out), "--verify", "--device", "cpu"]),
                          1, "add --reference train")
    result = runner.invoke(app, ["eval", "--run", str(out), "--json", "--device", "cpu", "--reference",
                                 "train", "--verify", "--num-pairs", "40", "--folds", "2"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    gallery = report["retrieval"]
    assert gallery["reference"] == "train" and gallery["queries"] == 12 and gallery["k"] == 1
    assert gallery["r_precision"] == gallery["precision_at_1"] is not None     # R = 1
    assert report["verification"]["pairs_from"] == "test with test or train"
    assert report["verification"]["matching"] == 20
    assert_one_line_error(runner.invoke(app, ["eval", "--run", str(out), "--reference", "gallery"]),
                          2, "--reference must be test or train")


def test_pairs_with_queries_start_with_a_query_and_leave_the_old_draw_alone():
    from centerloss.evaluation.verification import draw_pairs
    labels = torch.arange(60) % 7
    a, b, same = draw_pairs(labels, 300, seed=4, queries=20)
    assert int(a.max()) < 20 and bool((labels[a] == labels[b]).eq(same).all())
    assert bool((a != b).all()) and int(b.max()) >= 20
    for x, y in zip(draw_pairs(labels, 300, seed=4), draw_pairs(labels, 300, seed=4, queries=60)):
        assert torch.equal(x, y)
