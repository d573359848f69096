import pytest
import torch

from centerloss import build_model
from centerloss.config.config import Config
from centerloss.errors import CheckpointError
from centerloss.model.build import build_from_checkpoint
from centerloss.store import checkpoint as ckpt_io
from centerloss.store.runfolder import epoch_name


def make_ckpt(model_name="seed", dim=2):
    model = build_model(model_name, feature_dim=dim)
    cfg = Config(model=model_name, feature_dim=dim, lam=0.3, dataset="fashion-mnist")
    classes = [f"class {i}" for i in range(10)]
    return model, ckpt_io.Checkpoint(cfg, 7, classes, model.state_dict(), torch.randn(10, dim),
                                     [1, 28, 28], {"test_accuracy": 0.5})


def test_round_trip_keeps_weights_centers_and_metadata(tmp_path):
    model, ckpt = make_ckpt()
    path = tmp_path / "m.safetensors"
    ckpt_io.save_checkpoint(path, ckpt)
    back = ckpt_io.load_checkpoint(path)
    assert back.epoch == 7 and back.classes == ckpt.classes
    assert back.config == ckpt.config
    assert back.metrics == {"test_accuracy": 0.5}
    assert torch.equal(back.centers, ckpt.centers)
    rebuilt = build_from_checkpoint(back, path)
    x = torch.randn(3, 1, 28, 28)
    model.eval(), rebuilt.eval()
    torch.testing.assert_close(rebuilt(x)[0], model(x)[0], rtol=0, atol=0)
    assert not list(tmp_path.glob("*.tmp"))              # no temporary file left behind


def test_other_architecture_is_refused_clearly(tmp_path):
    _, ckpt = make_ckpt("seed", 2)
    ckpt.config.feature_dim = 3
    ckpt.centers = torch.zeros(10, 3)
    path = tmp_path / "m.safetensors"
    ckpt_io.save_checkpoint(path, ckpt)
    with pytest.raises(CheckpointError, match="feature dim 3"):
        build_from_checkpoint(ckpt_io.load_checkpoint(path), path)


def test_not_a_safetensors_file(tmp_path):
    path = tmp_path / "junk.safetensors"
    path.write_bytes(b"\x00" * 100)
    with pytest.raises(CheckpointError, match="junk.safetensors"):
        ckpt_io.load_checkpoint(path)


def test_missing_epoch_lists_the_epochs_present(tmp_path):
    _, ckpt = make_ckpt()
    for e in (1, 2):
        ckpt_io.save_checkpoint(tmp_path / "epochs" / epoch_name(e), ckpt)
    with pytest.raises(CheckpointError, match="epochs present: 1, 2"):
        ckpt_io.resolve(tmp_path, epoch=5)


def test_a_run_without_a_model_says_how_to_make_one(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no trained model.*cl train --out"):
        ckpt_io.resolve(tmp_path / "empty")
    with pytest.raises(CheckpointError, match="nowhere: no such run folder; pass --run"):
        ckpt_io.resolve(tmp_path / "nowhere")
