import gzip
import shutil

import pytest
import torch
from support.data import make_dataset

from centerloss import errors as errors_mod
from centerloss.data import batches as batch_mod, idx as idx_mod


def test_load_reads_idx_files_into_uint8_tensors(easy_data):
    ds = idx_mod.load("mnist", easy_data, download=False)
    assert ds.train.images.dtype == torch.uint8
    assert ds.train.images.shape == (600, 28, 28)
    assert ds.test.labels.shape == (200,)
    assert set(ds.train.labels.tolist()) == set(range(10))
    assert ds.classes[3] == "3"


def test_gzipped_files_in_a_plain_folder_are_found(tmp_path):
    src = make_dataset(tmp_path / "src", "FashionMNIST", n_train=50, n_test=20) / "FashionMNIST" / "raw"
    flat = tmp_path / "debian-like"
    flat.mkdir()
    for f in src.iterdir():
        with open(f, "rb") as fin, gzip.open(flat / (f.name + ".gz"), "wb") as fout:
            shutil.copyfileobj(fin, fout)
    ds = idx_mod.load("fashion-mnist", flat, download=False)
    assert len(ds.train) == 50 and ds.classes[0] == "T-shirt/top"


def test_missing_files_name_what_was_looked_for(tmp_path):
    with pytest.raises(errors_mod.DataError) as e:
        idx_mod.load("kmnist", tmp_path, download=False)
    msg = str(e.value)
    assert "train-images-idx3-ubyte" in msg and str(tmp_path) in msg and "\n" not in msg


def test_translate_shifts_each_image_by_its_own_offset():
    img = torch.zeros(2, 5, 5, dtype=torch.uint8)
    img[:, 2, 2] = 255
    out = batch_mod.translate(img, torch.tensor([[1, 0], [-2, 2]]), pad=2)
    assert out[0, 3, 2] == 255 and out[0].sum() == 255         # down by one row
    assert out[1, 0, 4] == 255 and out[1].sum() == 255         # up two rows, right two columns


def test_batches_are_a_seeded_permutation(easy_data):
    ds = idx_mod.load("mnist", easy_data, download=False)
    def labels(seed, epoch):
        return torch.cat([y for _, y in batch_mod.train_batches(ds.train, 64, seed, epoch, 2, 0.5, 0.5)])
    a, b = labels(0, 1), labels(0, 1)
    assert torch.equal(a, b)
    assert not torch.equal(a, labels(0, 2))
    assert sorted(a.tolist()) == sorted(ds.train.labels.tolist())   # every sample once


def test_resumed_batches_start_where_they_left_off(easy_data):
    ds = idx_mod.load("mnist", easy_data, download=False)
    full = list(batch_mod.train_batches(ds.train, 64, 3, 1, 2, 0.5, 0.5))
    rest = list(batch_mod.train_batches(ds.train, 64, 3, 1, 2, 0.5, 0.5, start=4))
    assert len(rest) == len(full) - 4
    assert torch.equal(rest[0][0], full[4][0])
