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


def _classes_reachable(weight: torch.Tensor) -> set[int]:
    """The classes a bias-free classifier predicts for 2-D features of norm 1 in 3,600 directions."""
    angle = torch.arange(3600) * (2 * torch.pi / 3600)
    features = torch.stack([angle.cos(), angle.sin()], 1)
    return set((features @ weight.t()).argmax(1).tolist())


@pytest.mark.parametrize("name", ["lenetspp", "seed", "resnet18"])
def test_2d_classifier_starts_with_every_class_reachable_and_evenly_spread(name):
    torch.manual_seed(3)
    w = build_model(name, num_classes=10, feature_dim=2).classifier.weight.detach()
    assert _classes_reachable(w) == set(range(10))
    angles = torch.atan2(w[:, 1], w[:, 0]).sort().values
    gaps = torch.diff(torch.cat([angles, angles[:1] + 2 * torch.pi]))
    assert torch.allclose(gaps, torch.full_like(gaps, 2 * torch.pi / 10), atol=1e-5)
    assert torch.allclose(w.norm(dim=1), torch.ones(10))


def test_default_linear_init_leaves_2d_classes_unreachable_which_is_why_cl_spreads_them():
    # the premise of spread_classes: with nn.Linear's own init some classes can never win
    unreachable = 0
    for seed in range(5):
        torch.manual_seed(seed)
        unreachable += 10 - len(_classes_reachable(torch.nn.Linear(2, 10, bias=False).weight.detach()))
    assert unreachable >= 5


def test_wider_classifier_rows_have_equal_norms_and_seeded_directions():
    torch.manual_seed(0)
    a = build_model("seed", feature_dim=16).classifier.weight.detach()
    torch.manual_seed(0)
    b = build_model("seed", feature_dim=16).classifier.weight.detach()
    assert torch.equal(a, b)
    assert torch.allclose(a.norm(dim=1), torch.ones(10))
    assert (a @ a.t()).fill_diagonal_(0).abs().max() < 0.99     # no two classes start parallel


@pytest.mark.parametrize("name", ["lenetspp", "seed"])
def test_feature_layer_ends_in_prelu_so_2d_features_are_not_trapped_in_a_quadrant(name):
    model = build_model(name)
    assert isinstance(model.feature[-1], torch.nn.PReLU)
    with torch.no_grad():
        model.feature[-1].weight.fill_(0.25)
        assert model.feature[-1](torch.tensor([-4.0])).item() == -1.0


@pytest.mark.parametrize("shape, channels", [((8, 6, 5, 5), 6), ((8, 2), 1)])
def test_prelu_training_pass_matches_aten_in_values_and_gradients(shape, channels):
    from torch import nn

    from centerloss.models import PReLU
    torch.manual_seed(0)
    ours, aten = PReLU(channels), nn.PReLU(channels)
    with torch.no_grad():
        ours.weight.uniform_(0.1, 0.4)
        aten.weight.copy_(ours.weight)
    x = torch.randn(shape).bfloat16().requires_grad_()
    x2 = x.detach().clone().requires_grad_()
    g = torch.randn(shape).bfloat16()
    y = ours(x)
    y2 = torch.nn.functional.prelu(x2, aten.weight.bfloat16())   # what autocast runs
    assert torch.equal(y, y2)                      # the forward values are the same, bit for bit
    y.backward(g)
    y2.backward(g)
    assert torch.equal(x.grad, x2.grad)
    assert torch.allclose(ours.weight.grad, aten.weight.grad, rtol=1e-2, atol=1e-3)
    assert ours.state_dict().keys() == aten.state_dict().keys()
