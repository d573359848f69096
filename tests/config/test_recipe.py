"""The recipe's notes: legal settings known to train badly are said on the start line."""
from __future__ import annotations

from centerloss.config import recipe
from centerloss.config.config import Config


def test_a_run_at_the_defaults_gets_no_note():
    assert recipe.notes(Config(), 10_000) == []


def test_lambda_zero_says_the_center_loss_is_only_watched():
    (note,) = recipe.notes(Config(lam=0.0), 10_000)
    assert note.startswith("lambda 0 trains softmax alone: the center loss is only watched")


def test_a_lambda_that_collapses_2d_features_says_why_and_what_works():
    (note,) = recipe.notes(Config(lam=10.0), 10_000)
    assert note.startswith("lambda 10 with 2-D features: the center loss outweighs softmax")
    assert "0.01 to 1 trains, 0.1 is the default" in note
    assert recipe.notes(Config(lam=1.0), 10_000) == []              # the largest that trains
    assert recipe.notes(Config(lam=10.0, feature_dim=128), 10_000) == []   # measured in 2-D only


def test_a_small_test_split_says_how_coarse_its_accuracy_is():
    assert recipe.notes(Config(), 6) == ["the test split holds 6 images, so test accuracy moves "
                                         "in steps of 16.7%"]
    assert recipe.notes(Config(), 1)[0].startswith("the test split holds 1 image, so")
    assert recipe.notes(Config(), recipe.SMALL_TEST) == []


def test_the_advice_for_too_few_steps_names_the_epochs_that_make_enough():
    assert recipe.steps_advice(3, 32) == ("--epochs 22 makes 704, a smaller --batch-size more "
                                          "steps an epoch")
    # one batch an epoch (54 images at batch 128): more epochs would take hundreds
    assert recipe.steps_advice(3, 1) == ("a smaller --batch-size makes more steps an epoch (1 now; "
                                         "--epochs would need 700)")
