"""Fixtures shared by the test files: tiny data sets and tiny trained runs, made once per session."""
from __future__ import annotations

from pathlib import Path

import pytest
from idxdata import make_dataset

from centerloss.config.config import Config
from centerloss.train.loop import train


@pytest.fixture(scope="session")
def easy_data(tmp_path_factory) -> Path:
    """A data folder with a small, easy MNIST-shaped data set in torchvision's raw layout."""
    return make_dataset(tmp_path_factory.mktemp("data"), n_train=600, n_test=200)


@pytest.fixture(scope="session")
def idx_root(tmp_path_factory) -> Path:
    """200 train and 200 test images of the easy ten-class idx set, as MNIST."""
    return make_dataset(tmp_path_factory.mktemp("idx"), "MNIST", n_train=200, n_test=200)


def tiny_config(data_dir: Path, **changes) -> Config:
    """The seed net for 2 epochs of 2 batches on the CPU in fp32: seconds, and exact to compare."""
    base = dict(model="seed", dataset="mnist", data_dir=str(data_dir), epochs=2, batch_size=100,
                lr=0.05, augment=0, device="cpu", precision="fp32", snapshot_train=150)
    return Config(**{**base, **changes})


@pytest.fixture(scope="session")
def runs(idx_root, tmp_path_factory) -> dict[str, Path]:
    """Two trained runs: 'flat' has 2-D features and center loss, 'wide' 4-D features, softmax alone."""
    root = tmp_path_factory.mktemp("runs")
    out = {"flat": root / "flat", "wide": root / "wide"}
    train(tiny_config(idx_root, lam=0.1, feature_dim=2), out["flat"])
    train(tiny_config(idx_root, lam=0.0, feature_dim=4), out["wide"])
    return out
