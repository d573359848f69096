"""centerloss.load: a run or a checkpoint as a model that takes images as a user has them, and
gives the features training itself computed for them."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import centerloss
from centerloss.data.registry import open_dataset
from centerloss.device.runtime import Runtime
from centerloss.errors import CheckpointError, ImageInputError, OptionError
from centerloss.evaluation.inference import load_model
from centerloss.store import checkpoint as ckpt_io, runfolder


@pytest.fixture(scope="module")
def model(runs):
    return centerloss.load(runs["flat"], device="cpu")


@pytest.fixture(scope="module")
def test_images(idx_root):
    return open_dataset("mnist", idx_root, download=False).test.images.numpy()    # uint8 [N, 28, 28]


def test_features_are_those_training_computed_for_the_test_split(runs, model, test_images):
    snapshot, _ = ckpt_io.read_tensors(runfolder.snapshot_path(runs["flat"], model.epoch))
    out = model(test_images)
    assert out.features.shape == (200, 2) and out.logits.shape == (200, 10)
    assert torch.allclose(out.features, snapshot["test_features"], atol=1e-5)
    accuracy = (out.logits.argmax(1) == snapshot["test_labels"]).float().mean()
    assert accuracy.item() == pytest.approx(model.metrics["test_accuracy"], abs=1e-6)


def test_a_run_a_checkpoint_and_an_epoch_open_alike(runs, model):
    assert model.epoch == 2 and model.classes == ckpt_io.load_checkpoint(
        runfolder.model_path(runs["flat"])).classes
    assert centerloss.load(runfolder.model_path(runs["flat"]), device="cpu").epoch == 2
    assert centerloss.load(runs["flat"], epoch=1, device="cpu").epoch == 1
    assert model.config.feature_dim == 2 and model.input_shape == [1, 28, 28]


def test_every_form_of_the_same_images_gives_the_same_features(model, test_images):
    four = test_images[:4]
    expected = model(four).features
    forms = {
        "tensor": torch.from_numpy(four),
        "channels last": four[..., None],
        "channels first": torch.from_numpy(four)[:, None],
        "PIL": [Image.fromarray(image) for image in four],
        "list of arrays": list(four),
    }
    for name, images in forms.items():
        assert torch.equal(model(images).features, expected), name
    assert torch.allclose(model(four[0]).features, expected[:1], atol=1e-6)   # one [H, W] image
    assert model.predict(four) == [model.classes[i] for i in model(four).logits.argmax(1).tolist()]


def test_colour_and_other_sizes_are_converted_as_pillow_would(model, test_images):
    rgb = np.stack([test_images[:3]] * 3, axis=-1)                     # [3, 28, 28, 3], gray in RGB
    assert torch.equal(model(rgb).features, model(test_images[:3]).features)
    big = np.stack([np.asarray(Image.fromarray(i).resize((56, 56))) for i in test_images[:3]])
    back = np.stack([np.asarray(Image.fromarray(i).resize((28, 28), Image.Resampling.BILINEAR)) for i in big])
    assert torch.equal(model(big).features, model(back).features)


def test_nearest_center_is_the_closest_center(model, test_images):
    features = model(test_images[:8]).features
    expected = torch.cdist(features, model.centers).argmin(1)
    assert torch.equal(model.nearest_center(features), expected)


@pytest.mark.parametrize("images, message", [
    (np.zeros((2, 28, 28), dtype=np.float32), "images must be uint8 pixels (0-255)"),
    (np.zeros((2, 28, 28, 4), dtype=np.uint8), "got shape [2, 28, 28, 4]"),
    ("digit.png", "got str"),
    ([], "no images given"),
])
def test_images_it_cannot_take_are_one_clear_error(model, images, message):
    with pytest.raises(ImageInputError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        model(images)


def test_a_folder_without_a_run_or_a_missing_epoch_is_a_clear_error(tmp_path, runs):
    with pytest.raises(CheckpointError, match="holds no trained model"):
        centerloss.load(tmp_path)
    with pytest.raises(CheckpointError, match="has no epoch 9; epochs present: 1, 2"):
        centerloss.load(runs["flat"], epoch=9)
    with pytest.raises(OptionError, match="picks an epoch of a run folder"):
        centerloss.load(runfolder.model_path(runs["flat"]), epoch=1)


def test_a_loaded_model_runs_in_the_layout_it_trained_in(runs, model):
    """A model from a checkpoint is channels_last, as in training: left in NCHW, oneDNN took twice
    as long to evaluate it in bf16. Both ways commands and the library load models are checked."""
    _, loaded = load_model(runfolder.model_path(runs["flat"]), Runtime.resolve("cpu", "bf16"))
    for module in (loaded, model.module):
        convs = [m for m in module.modules() if isinstance(m, torch.nn.Conv2d)]
        assert convs and all(c.weight.is_contiguous(memory_format=torch.channels_last)
                             and not c.weight.is_contiguous() for c in convs if c.in_channels > 1)
