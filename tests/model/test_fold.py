"""model/fold.py: BatchNorm folded into the conv before it computes what the two did."""
import pytest
import torch
from torch import nn

from centerloss.model.fold import fold_batchnorm
from centerloss.model.nets import build_model


def trained_statistics(model: nn.Module, shape: tuple[int, ...]) -> nn.Module:
    """BatchNorm with running statistics and affine parameters far from their init."""
    torch.manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            nn.init.uniform_(m.weight, 0.5, 2.0)
            nn.init.uniform_(m.bias, -0.5, 0.5)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(16, *shape) * 3 + 1)
    return model.eval()


@pytest.mark.parametrize("name, shape", [("lenetspp", (1, 28, 28)), ("seed", (1, 28, 28)),
                                         ("resnet18", (3, 16, 16))])
def test_the_folded_model_computes_what_the_model_does(name, shape):
    model = trained_statistics(build_model(name, 10, 2, shape[0], shape[1]), shape)
    model = model.to(memory_format=torch.channels_last)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    folded = fold_batchnorm(model)
    x = torch.randn(8, *shape).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        expected, got = model(x), folded(x)
    for a, b in zip(expected, got):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)      # the model is untouched
    batchnorms = sum(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    if name == "lenetspp":
        assert folded is not model and batchnorms == 0       # all six folded
    elif name == "seed":
        assert folded is model                                # no BatchNorm: nothing to copy
    else:
        # ResNet-18 calls its blocks' layers by name; only the shortcuts' Sequentials fold
        assert 0 < batchnorms < sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
