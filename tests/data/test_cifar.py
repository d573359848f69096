"""CIFAR-10 from generated binary batches: planes, records, classes, and refusals."""
import io
import tarfile

import pytest
import torch
from support.data import make_cifar_bin

from centerloss.config.config import Config
from centerloss.data import cifar
from centerloss.data.registry import open_dataset
from centerloss.errors import DataError
from centerloss.evaluation.evaluate import evaluate_checkpoint
from centerloss.store import checkpoint as ckpt_io
from centerloss.train.loop import train


def test_binary_batches_load_channels_last_with_their_classes(tmp_path):
    folder = make_cifar_bin(tmp_path, n_train=50, n_test=20)
    ds = open_dataset("cifar10", tmp_path, download=False)
    assert ds.train.images.shape == (50, 32, 32, 3) and ds.test.images.shape == (20, 32, 32, 3)
    assert ds.input_shape == [3, 32, 32]
    # record i of the train batches: red plane i, green 1, blue 2
    assert torch.equal(ds.train.images[:, 5, 7, 0], torch.arange(50, dtype=torch.uint8))
    assert (ds.train.images[..., 1] == 1).all() and (ds.train.images[..., 2] == 2).all()
    raw = (folder / "data_batch_1.bin").read_bytes()
    assert ds.train.labels[0] == raw[0] and ds.train.labels[1] == raw[3073]
    assert ds.classes[:2] == ("plane", "car")      # from batches.meta.txt
    assert ds.mean == cifar.MEAN


def test_the_batches_folder_itself_is_accepted(tmp_path):
    folder = make_cifar_bin(tmp_path)
    assert len(open_dataset("cifar10", folder, download=False).test) == 20


def test_a_truncated_batch_is_a_clear_error(tmp_path):
    folder = make_cifar_bin(tmp_path)
    path = folder / "test_batch.bin"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(DataError, match="not a whole number of 3073-byte records"):
        open_dataset("cifar10", tmp_path, download=False)


def test_the_pickled_python_version_is_refused_with_the_reason(tmp_path):
    (tmp_path / "cifar-10-batches-py").mkdir()
    (tmp_path / "cifar-10-batches-py" / "data_batch_1").write_bytes(b"\x80\x04junk")
    with pytest.raises(DataError, match="unpickling a download can run code"):
        open_dataset("cifar10", tmp_path, download=False)


def test_resizing_or_recolouring_a_built_in_set_is_refused(tmp_path):
    make_cifar_bin(tmp_path)
    with pytest.raises(DataError, match="--image-size resizes only --dataset folder"):
        open_dataset("cifar10", tmp_path, download=False, image_size=64)
    with pytest.raises(DataError, match="--channels applies only"):
        open_dataset("cifar10", tmp_path, download=False, channels=1)


def test_the_archive_is_unpacked_without_letting_members_choose_their_path(tmp_path):
    src = make_cifar_bin(tmp_path / "src")
    root = tmp_path / "root"
    root.mkdir()
    with tarfile.open(root / "cifar-10-binary.tar.gz", "w:gz") as tar:
        for f in sorted(src.iterdir()):
            tar.add(f, arcname=f"cifar-10-batches-bin/{f.name}")
        evil = tarfile.TarInfo("../escaped.txt")
        evil.size = 4
        tar.addfile(evil, io.BytesIO(b"evil"))
    ds = open_dataset("cifar10", root, download=False)
    assert len(ds.train) == 50
    assert not (tmp_path / "escaped.txt").exists() and not (root.parent / "escaped.txt").exists()
    assert sorted(p.name for p in (root / "cifar-10-batches-bin").iterdir()) == sorted(
        p.name for p in src.iterdir())


def test_a_run_on_cifar10_saves_and_evaluates_rgb_inputs(tmp_path):
    make_cifar_bin(tmp_path / "data")
    cfg = Config(dataset="cifar10", data_dir=str(tmp_path / "data"), model="seed", feature_dim=4,
                 epochs=1, batch_size=25, device="cpu", snapshot_train=0)
    records = train(cfg, tmp_path / "run")
    assert len(records) == 1 and records[0]["train_images_per_s"] > 0
    ckpt = ckpt_io.load_checkpoint(tmp_path / "run" / "model.safetensors")
    assert ckpt.input_shape == [3, 32, 32]
    assert ckpt.normalization == {"mean": list(cifar.MEAN), "std": list(cifar.STD)}
    report = evaluate_checkpoint(tmp_path / "run" / "model.safetensors", device="cpu")
    assert report["samples"] == 20 and report["accuracy"] == pytest.approx(records[0]["test_accuracy"])
