import pytest
import torch

from centerloss import build_model


@pytest.mark.parametrize("name", ["lenetspp", "seed"])
@pytest.mark.parametrize("dim", [2, 3])
def test_forward_returns_features_and_logits(name, dim):
    model = build_model(name, num_classes=10, feature_dim=dim)
    features, logits = model(torch.randn(4, 1, 28, 28))
    assert features.shape == (4, dim)
    assert logits.shape == (4, 10)
    assert model.classifier.bias is None


def test_lenetspp_has_the_papers_size():
    params = sum(p.numel() for p in build_model("lenetspp").parameters())
    # the paper's LeNets++ has about 797k parameters; our BatchNorm and per-channel PReLU add ~1.3k
    assert 790_000 < params < 805_000


@pytest.mark.parametrize("name", ["lenetspp", "seed"])
def test_feature_layer_ends_in_prelu_so_2d_features_are_not_trapped_in_a_quadrant(name):
    model = build_model(name)
    assert isinstance(model.feature[-1], torch.nn.PReLU)
    with torch.no_grad():
        model.feature[-1].weight.fill_(0.25)
        assert model.feature[-1](torch.tensor([-4.0])).item() == -1.0
