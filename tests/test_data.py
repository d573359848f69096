import gzip
import shutil

import pytest
import torch

from centerloss import data
from idxdata import make_dataset


def test_load_reads_idx_files_into_uint8_tensors(easy_data):
    ds = data.load("mnist", easy_data, download=False)
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
    ds = data.load("fashion-mnist", flat, download=False)
    assert len(ds.train) == 50 and ds.classes[0] == "T-shirt/top"


def test_missing_files_name_what_was_looked_for(tmp_path):
    with pytest.raises(data.DataError) as e:
        data.load("kmnist", tmp_path, download=False)
    msg = str(e.value)
    assert "train-images-idx3-ubyte" in msg and str(tmp_path) in msg and "\n" not in msg


def test_translate_shifts_each_image_by_its_own_offset():
    img = torch.zeros(2, 5, 5, dtype=torch.uint8)
    img[:, 2, 2] = 255
    out = data.translate(img, torch.tensor([[1, 0], [-2, 2]]), pad=2)
    assert out[0, 3, 2] == 255 and out[0].sum() == 255         # down by one row
    assert out[1, 0, 4] == 255 and out[1].sum() == 255         # up two rows, right two columns


def test_batches_are_a_seeded_permutation(easy_data):
    ds = data.load("mnist", easy_data, download=False)
    def labels(seed, epoch):
        return torch.cat([y for _, y in data.train_batches(ds.train, 64, seed, epoch, 2, 0.5, 0.5)])
    a, b = labels(0, 1), labels(0, 1)
    assert torch.equal(a, b)
    assert not torch.equal(a, labels(0, 2))
    assert sorted(a.tolist()) == sorted(ds.train.labels.tolist())   # every sample once


def test_resumed_batches_start_where_they_left_off(easy_data):
    ds = data.load("mnist", easy_data, download=False)
    full = list(data.train_batches(ds.train, 64, 3, 1, 2, 0.5, 0.5))
    rest = list(data.train_batches(ds.train, 64, 3, 1, 2, 0.5, 0.5, start=4))
    assert len(rest) == len(full) - 4
    assert torch.equal(rest[0][0], full[4][0])


def test_read_idx_returns_what_the_writer_wrote(tmp_path):
    import numpy as np

    from centerloss.idx import read_idx
    from idxdata import write_idx_images, write_idx_labels
    images = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    write_idx_images(tmp_path / "i", images)
    write_idx_labels(tmp_path / "l", np.arange(5))
    assert torch.equal(read_idx(tmp_path / "i", 3), torch.from_numpy(images))
    assert read_idx(tmp_path / "l", 1).tolist() == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("cut, extra, message", [
    (100, b"", "it holds fewer bytes than its header's 600 x 28 x 28"),
    (None, b"\0", "it holds more bytes than its header's 600 x 28 x 28"),
    (10, b"", "it ends inside its header"),
    (0, b"", "not an idx file of 3-D unsigned bytes (it starts empty)"),
])
def test_a_broken_idx_file_is_named_with_the_reason(easy_data, tmp_path, cut, extra, message):
    broken = tmp_path / "broken"
    shutil.copytree(easy_data, broken)
    path = broken / "MNIST" / "raw" / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:cut] + extra)
    with pytest.raises(data.DataError) as e:
        data.load("mnist", broken, download=False)
    assert str(e.value) == f"mnist: {path} cannot be read ({message}); delete it and fetch it again"


def test_labels_in_an_images_file_are_refused(easy_data, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(easy_data, broken)
    raw = broken / "MNIST" / "raw"
    shutil.copy(raw / "t10k-labels-idx1-ubyte", raw / "t10k-images-idx3-ubyte")
    with pytest.raises(data.DataError, match=r"not an idx file of 3-D unsigned bytes \(it starts 00000801\)"):
        data.load("mnist", broken, download=False)
