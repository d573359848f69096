"""Verification metrics against values worked out by hand on tiny lists of scores."""
import math

import pytest
import torch

from centerloss.evaluation import verification as v

# Six pairs, scores from high to low: match, match, non-match, match, non-match, non-match.
SCORES = torch.tensor([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
SAME = torch.tensor([1, 1, 0, 1, 0, 0], dtype=torch.bool)


def test_roc_points_by_hand():
    fpr, tpr, thresholds = v.roc(SCORES, SAME)
    third = 1 / 3
    torch.testing.assert_close(fpr, torch.tensor([0, 0, 0, third, third, 2 * third, 1], dtype=torch.float64))
    torch.testing.assert_close(tpr, torch.tensor([0, third, 2 * third, 2 * third, 1, 1, 1], dtype=torch.float64))
    assert thresholds[0] == math.inf and thresholds[1:].tolist() == pytest.approx(SCORES.tolist())


def test_auc_eer_tar_by_hand():
    fpr, tpr, _ = v.roc(SCORES, SAME)
    # matching pairs beat non-matching ones in 8 of the 3 x 3 comparisons (0.6 loses to 0.7)
    assert v.auc(fpr, tpr) == pytest.approx(8 / 9)
    # at threshold 0.7: one false accept of three, one false reject of three
    assert v.eer(fpr, tpr) == pytest.approx(1 / 3)
    assert v.tar_at_far(fpr, tpr, 0.0) == pytest.approx(2 / 3)
    assert v.tar_at_far(fpr, tpr, 0.3) == pytest.approx(2 / 3)
    assert v.tar_at_far(fpr, tpr, 1 / 3) == pytest.approx(1.0)
    # shuffling the pairs changes nothing
    perm = torch.tensor([3, 0, 5, 1, 4, 2])
    assert v.auc(*v.roc(SCORES[perm], SAME[perm])[:2]) == pytest.approx(8 / 9)


def test_tied_scores_enter_together():
    scores = torch.tensor([0.5, 0.5, 0.5, 0.1])
    same = torch.tensor([1, 0, 1, 0], dtype=torch.bool)
    fpr, tpr, _ = v.roc(scores, same)
    assert fpr.tolist() == [0, 0.5, 1] and tpr.tolist() == [0, 1, 1]
    assert v.auc(fpr, tpr) == pytest.approx(0.75)       # 2 wins and 2 ties (half each) of 4
    # between (FAR 0, FRR 1) and (FAR 1/2, FRR 0) the rates meet at 1/3
    assert v.eer(fpr, tpr) == pytest.approx(1 / 3)


def test_best_threshold_by_hand():
    # rejecting the two lowest (0.4, 0.5) gets 5 of 6 right; so does rejecting four; lowest wins
    assert v.best_threshold(SCORES, SAME) == pytest.approx(0.55)
    assert v.best_threshold(torch.tensor([0.2, 0.9]), torch.tensor([True, True])) == -math.inf


def test_ten_fold_protocol_on_two_folds_by_hand():
    scores = torch.tensor([0.9, 0.3, 0.6, 0.65, 0.8, 0.2, 0.5, 0.35])
    same = torch.tensor([1, 0, 1, 0, 1, 0, 1, 0], dtype=torch.bool)
    # fold 0: pairs 0-3, fold 1: pairs 4-7. On fold 1 the best cut is between 0.35 and 0.5: 0.425,
    # which gets 3 of fold 0 right (0.65 is falsely accepted). On fold 0 it is between 0.3 and
    # 0.6: 0.45, which gets all of fold 1 right.
    mean, std, thresholds = v.kfold_accuracy(scores, same, folds=2)
    assert thresholds == pytest.approx([0.425, 0.45])
    assert mean == pytest.approx(0.875) and std == pytest.approx(0.125)


def test_folds_follow_lfw_sets():
    # LFW's pairs.txt: each set lists its matching pairs, then its non-matching ones
    same = torch.tensor([1, 1, 1, 0, 0, 0, 1, 1, 1, 0, 0, 0], dtype=torch.bool)
    assert v.fold_ids(same, 2).tolist() == [0] * 6 + [1] * 6


def test_summary_and_scores():
    s = v.verify_scores(SCORES, SAME, folds=3).summary
    assert s["pairs"] == 6 and s["matching"] == 3 and s["non_matching"] == 3
    assert s["auc"] == pytest.approx(8 / 9) and s["eer"] == pytest.approx(1 / 3)
    assert s["tar_at_far"] == pytest.approx({"0.001": 2 / 3, "0.01": 2 / 3})
    assert s["far_resolution"] == pytest.approx(1 / 3)
    a = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]])
    b = torch.tensor([[0.0, 1.0], [2.0, 2.0], [3.0, 4.0]])
    assert v.pair_scores(a[:2], b[:2], "cosine").tolist() == pytest.approx([0.0, 1.0])
    assert v.pair_scores(a, b, "euclidean").tolist() == pytest.approx([-math.sqrt(2), -math.sqrt(2), -5.0])
    with pytest.raises(ValueError, match="unknown metric"):
        v.pair_scores(a, b, "manhattan")
    with pytest.raises(ValueError, match="matching and non-matching"):
        v.roc(SCORES, torch.ones(6, dtype=torch.bool))


def test_drawn_pairs_are_what_they_claim_and_follow_the_seed():
    labels = torch.tensor([0, 1, 2, 0, 1, 0, 3, 1, 0])     # class 2 and 3 have one image each
    a, b, same = v.draw_pairs(labels, 400, seed=5)
    assert same.sum() == 200
    assert (labels[a[same]] == labels[b[same]]).all() and (a[same] != b[same]).all()
    assert (labels[a[~same]] != labels[b[~same]]).all()
    assert not (labels[a[same]] >= 2).any()                 # no single-image class matches itself
    # every other image of a class is a possible partner: image 0 meets all of 3, 5 and 8
    assert {int(j) for i, j in zip(a[same], b[same]) if i == 0} == {3, 5, 8}
    again = v.draw_pairs(labels, 400, seed=5)
    assert all(torch.equal(x, y) for x, y in zip((a, b, same), again))
    assert not torch.equal(v.draw_pairs(labels, 400, seed=6)[0], a)
    with pytest.raises(ValueError, match="a class with two images"):
        v.draw_pairs(torch.tensor([0, 1, 2]), 10)


def test_well_separated_features_verify_perfectly():
    features = torch.cat([torch.randn(50, 4) * 0.01 + 3 * torch.eye(4)[k] for k in range(4)])
    labels = torch.arange(4).repeat_interleave(50)
    s = v.verify_features(features, labels, pairs=400, seed=0).summary
    assert s["auc"] == 1.0 and s["eer"] == 0.0 and s["accuracy"] == 1.0
