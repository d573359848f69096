"""--model resnet18: torchvision's ResNet-18 for small images, with an embedding layer."""
import torch
from torch import nn

from centerloss.config.config import Config
from centerloss.model.build import build_from_checkpoint
from centerloss.model.nets import ResNet18, build_model
from centerloss.store import checkpoint as ckpt_io


def test_small_input_stem_embedding_and_bias_free_classifier():
    torch.manual_seed(0)
    model = build_model("resnet18", num_classes=5, feature_dim=16, in_channels=3, image_size=16)
    assert isinstance(model, ResNet18)
    stem = model.body.conv1
    assert stem.kernel_size == (3, 3) and stem.stride == (1, 1) and stem.in_channels == 3
    assert isinstance(model.body.maxpool, nn.Identity)
    assert model.classifier.bias is None and model.classifier.weight.shape == (5, 16)
    assert isinstance(model.feature[1], nn.BatchNorm1d)
    model.eval()
    features, logits = model(torch.randn(3, 3, 16, 16))
    assert features.shape == (3, 16) and logits.shape == (3, 5)
    torch.testing.assert_close(logits, features @ model.classifier.weight.t())


def test_grayscale_and_a_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    model = build_model("resnet18", num_classes=3, feature_dim=8, in_channels=1, image_size=8).eval()
    x = torch.randn(2, 1, 8, 8)
    cfg = Config(model="resnet18", feature_dim=8, dataset="folder")
    ckpt = ckpt_io.Checkpoint(cfg, 1, ["a", "b", "c"], model.state_dict(), torch.zeros(3, 8),
                              [1, 8, 8], {}, {"mean": [0.5], "std": [0.25]})
    ckpt_io.save_checkpoint(tmp_path / "m.safetensors", ckpt)
    loaded = ckpt_io.load_checkpoint(tmp_path / "m.safetensors")
    assert loaded.normalization == {"mean": [0.5], "std": [0.25]}
    rebuilt = build_from_checkpoint(loaded).eval()
    torch.testing.assert_close(rebuilt(x)[0], model(x)[0])
