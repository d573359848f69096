import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from idxdata import make_dataset  # noqa: E402


@pytest.fixture(scope="session")
def easy_data(tmp_path_factory) -> Path:
    """A data folder with a small, easy MNIST-shaped data set in torchvision's raw layout."""
    return make_dataset(tmp_path_factory.mktemp("data"), n_train=600, n_test=200)
