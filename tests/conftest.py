"""Fixtures shared by the test files: tiny data sets and tiny trained runs, made once per session."""
from __future__ import annotations

from pathlib import Path

import pytest
from support.data import make_dataset
from support.runs import quick_config

from centerloss.train.loop import train


@pytest.fixture(scope="session")
def easy_data(tmp_path_factory) -> Path:
    """A data folder with a small, easy MNIST-shaped data set in torchvision's raw layout."""
    return make_dataset(tmp_path_factory.mktemp("data"), n_train=600, n_test=200)


@pytest.fixture(scope="session")
def idx_root(tmp_path_factory) -> Path:
    """200 train and 200 test images of the easy ten-class idx set, as MNIST."""
    return make_dataset(tmp_path_factory.mktemp("idx"), "MNIST", n_train=200, n_test=200)


@pytest.fixture(scope="session")
def runs(idx_root, tmp_path_factory) -> dict[str, Path]:
    """Two trained runs: 'flat' has 2-D features and center loss, 'wide' 4-D features, softmax alone."""
    root = tmp_path_factory.mktemp("runs")
    out = {"flat": root / "flat", "wide": root / "wide"}
    train(quick_config(idx_root, lam=0.1, feature_dim=2), out["flat"])
    train(quick_config(idx_root, lam=0.0, feature_dim=4), out["wide"])
    return out
