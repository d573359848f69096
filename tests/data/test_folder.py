"""Image folders: layout, held-out split, decoding, channels, and resident vs streamed batches."""
import numpy as np
import pytest
import torch
from PIL import Image
from support.data import make_folder, write_png_gray

from centerloss.data import folder
from centerloss.data.batches import eval_batches, train_batches
from centerloss.data.registry import open_dataset
from centerloss.data.types import Split
from centerloss.errors import DataError


def test_classes_are_the_subfolders_and_a_tenth_of_each_is_held_out(tmp_path):
    make_folder(tmp_path, classes=3, per_class=10, size=12)
    ds = open_dataset("folder", tmp_path, image_size=16, workers=0)
    assert ds.classes == ("class_0", "class_1", "class_2")
    assert len(ds.train) == 27 and len(ds.test) == 3
    assert torch.equal(ds.test.labels.sort().values, torch.tensor([0, 1, 2]))
    assert ds.input_shape == [3, 16, 16] and ds.train.images.shape == (27, 16, 16, 3)
    # the split depends on the class name alone: a second read holds out the same images
    again = open_dataset("folder", tmp_path, image_size=16, workers=0)
    assert torch.equal(again.test.images, ds.test.images)
    assert folder.held_out("class_0", 10) == folder.held_out("class_0", 10)
    assert len(folder.held_out("x", 2)) == 1 and folder.held_out("x", 1) == set()


def test_stats_are_the_train_split_per_channel(tmp_path):
    make_folder(tmp_path, classes=2, per_class=5, size=8)
    ds = open_dataset("folder", tmp_path, image_size=8, workers=0)
    pixels = ds.train.images.double().reshape(-1, 3) / 255
    np.testing.assert_allclose(ds.mean, pixels.mean(0).tolist(), atol=1e-9)
    np.testing.assert_allclose(ds.std, pixels.std(0, unbiased=False).tolist(), atol=1e-9)
    assert ds.normalization()["mean"] == list(ds.mean)


def test_grayscale_is_detected_and_kept_without_a_channel_axis(tmp_path):
    make_folder(tmp_path, classes=2, per_class=4, size=10, rgb=False)
    ds = open_dataset("folder", tmp_path, image_size=10, workers=0)
    assert ds.train.images.shape == (6, 10, 10) and ds.input_shape == [1, 10, 10]
    rgb = open_dataset("folder", tmp_path, image_size=10, channels=3, workers=0)
    assert rgb.train.images.shape == (6, 10, 10, 3)
    assert torch.equal(rgb.train.images[..., 0], ds.train.images)   # gray -> RGB copies the plane


def test_decode_resizes_the_shorter_side_and_crops_the_centre(tmp_path):
    img = np.zeros((20, 40), dtype=np.uint8)      # 40 wide, 20 high
    img[:, 10:30] = 200                           # the middle half is bright
    Image.fromarray(img).save(tmp_path / "wide.png")
    out = folder.decode(tmp_path / "wide.png", 10, 1)
    assert out.shape == (10, 10)
    assert (out[:, 2:8] == 200).all()             # the centre crop is the bright middle
    assert folder.decode(tmp_path / "wide.png", 10, 3).shape == (10, 10, 3)


def test_train_and_test_subfolders_give_the_split(tmp_path):
    make_folder(tmp_path / "train", classes=3, per_class=4, size=8)
    make_folder(tmp_path / "test", classes=2, per_class=2, size=8, seed=1)
    ds = open_dataset("folder", tmp_path, image_size=8, workers=0)
    assert ds.classes == ("class_0", "class_1", "class_2")
    assert len(ds.train) == 12 and len(ds.test) == 4
    (tmp_path / "test" / "stranger").mkdir()
    write_png_gray(tmp_path / "test" / "stranger" / "a.png", 10)
    with pytest.raises(DataError, match="have no folder in"):
        open_dataset("folder", tmp_path, image_size=8, workers=0)


def test_unusable_folders_are_one_line_errors(tmp_path):
    def error() -> str:
        with pytest.raises(DataError) as err:
            open_dataset("folder", tmp_path, workers=0)
        assert "\n" not in str(err.value)
        return str(err.value)

    assert "no class subfolders" in error()
    (tmp_path / "a").mkdir()
    assert "a: no images" in error()
    write_png_gray(tmp_path / "a" / "1.png", 1)
    assert "one class (a); softmax needs at least two" in error()
    (tmp_path / "b").mkdir()
    write_png_gray(tmp_path / "b" / "1.png", 1)
    assert "no class has two images" in error()


def test_a_corrupt_image_names_its_file_in_one_line_even_from_a_worker(tmp_path):
    make_folder(tmp_path, classes=2, per_class=3, size=8)
    (tmp_path / "class_1" / "img_000.png").write_bytes(b"not a png at all")
    with pytest.raises(DataError) as err:
        open_dataset("folder", tmp_path, image_size=8, workers=1, channels=3)
    assert "img_000.png: cannot read this image" in str(err.value)
    assert "\n" not in str(err.value)
    with pytest.raises(DataError, match="--data-dir must name a folder"):
        open_dataset("folder", tmp_path / "missing")


def test_a_set_over_the_memory_budget_streams_the_same_batches(tmp_path):
    make_folder(tmp_path, classes=3, per_class=12, size=12)
    resident = folder.load_folder(tmp_path, image_size=16, workers=0)
    streamed = folder.load_folder(tmp_path, image_size=16, workers=2, memory_mb=1e-3)
    assert isinstance(resident.train, Split) and isinstance(streamed.train, folder.StreamedSplit)
    assert streamed.input_shape == resident.input_shape and len(streamed.train) == len(resident.train)
    np.testing.assert_allclose(streamed.mean, resident.mean)      # all 33 images are in the sample
    kw = dict(batch_size=8, seed=1, epoch=1, augment=2, mean=resident.mean, std=resident.std)
    batches = list(zip(train_batches(resident.train, **kw), train_batches(streamed.train, **kw)))
    assert len(batches) == 4
    for (xr, yr), (xs, ys) in batches:
        torch.testing.assert_close(xs, xr)
        assert torch.equal(ys, yr)
    for (xr, yr), (xs, ys) in zip(eval_batches(resident.test, 2, 0.5, 0.5),
                                  eval_batches(streamed.test, 2, 0.5, 0.5)):
        torch.testing.assert_close(xs, xr)
        assert torch.equal(ys, yr)


def test_exif_orientation_is_honoured_and_pillow_stays_quiet(tmp_path, recwarn):
    """A phone stores a portrait photo as landscape pixels plus an EXIF rotation: decode turns it
    upright, as every viewer does, for training, --pairs and cl embed --images alike."""
    pixels = np.zeros((8, 16), np.uint8)
    pixels[:, :8] = 255                                  # left half white, as stored
    exif = Image.Exif()
    exif[0x0112] = 6                                     # Orientation: rotate 90 degrees clockwise
    Image.fromarray(pixels).save(tmp_path / "photo.jpg", exif=exif.tobytes(), quality=100)
    upright = folder.decode(tmp_path / "photo.jpg", 8, 1)
    assert upright.shape == (8, 8)
    assert upright[:4].mean() > 200 and upright[4:].mean() < 50   # the white half is now on top
    assert not [w for w in recwarn if "PIL" in (w.filename or "")]
