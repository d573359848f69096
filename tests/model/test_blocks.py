"""A model's BatchNorm + activation pairs as blocks (compile: blocks): the view computes and
trains what the model does, through the model's own parameters and buffers."""
import pytest
import torch
from torch import nn

from centerloss.device import accel
from centerloss.errors import CompileError
from centerloss.model import blocks
from centerloss.model.nets import build_model


def test_lenetspp_has_six_blocks_and_the_other_nets_none():
    assert blocks.count(build_model("lenetspp")) == 6
    assert blocks.count(build_model("seed")) == 0        # no BatchNorm
    # ResNet-18's blocks call their layers by name, not in a Sequential: nothing to pair
    assert blocks.count(build_model("resnet18", in_channels=3, image_size=32)) == 0


def test_the_view_computes_and_trains_what_the_model_does():
    torch.manual_seed(0)
    model = build_model("lenetspp").to(memory_format=torch.channels_last)
    wrapped = []
    view = blocks.with_blocks(model, lambda block: wrapped.append(block) or block)
    assert len(wrapped) == 6 and all(isinstance(b, blocks.NormAct) for b in wrapped)
    assert [type(b.norm) for b in wrapped] == [nn.BatchNorm2d] * 6
    # the model is left as it was: what is evaluated, saved and exported
    assert not any(isinstance(m, blocks.NormAct) for m in model.modules())
    assert set(model.state_dict()) == set(build_model("lenetspp").state_dict())
    assert {id(p) for p in view.parameters()} == {id(p) for p in model.parameters()}
    x = torch.randn(8, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    outputs = []
    for net in (model, view):
        torch.manual_seed(1)
        bn = model.body[1]
        bn.reset_running_stats()
        for p in model.parameters():
            p.grad = None
        features, logits = net(x)
        logits.square().mean().backward()
        outputs.append([features.detach(), logits.detach(), bn.running_mean.clone(),
                        *[p.grad.clone() for p in model.parameters()]])
    assert outputs[1][2].abs().sum() > 0            # the view updated the model's running stats
    # the model pools before the PReLUs that a pooling follows (nets.PoolFirst); the view's blocks
    # keep each PReLU with its BatchNorm, so those slopes' gradients are the same sum in another
    # order; everything else is the same, bit for bit
    body = model.body
    pooled = {id(body[i].weight) for i in range(len(body) - 1)
              if isinstance(body[i], nn.PReLU) and isinstance(body[i + 1], nn.MaxPool2d)}
    assert len(pooled) == 3
    summed = [False] * 3 + [id(p) in pooled for p in model.parameters()]
    for a, b, other_order in zip(*outputs, summed):
        if other_order:
            torch.testing.assert_close(a, b, rtol=1e-5, atol=0)
        else:
            assert torch.equal(a, b)
    model.eval()                    # switching the model switches the view's layers with it
    assert not any(m.training for m in view.modules() if isinstance(m, nn.BatchNorm2d))


def test_a_model_without_blocks_is_its_own_view():
    model = build_model("seed")
    assert blocks.with_blocks(model, lambda block: pytest.fail("nothing to wrap")) is model


def test_compiling_blocks_of_a_model_without_them_is_a_one_line_error(monkeypatch):
    monkeypatch.setattr(torch, "compile", lambda model, **kw: pytest.fail("must not compile"))
    with pytest.raises(CompileError, match=r"^compile: blocks compiles each BatchNorm with the "
                                           r"activation after it, and SeedNet has no such pair"):
        accel.compiled_forward(build_model("seed"), 8, torch.device("cpu"), blocks=True)


def test_compiled_blocks_compile_each_pair_and_leave_partial_batches_eager(monkeypatch):
    compiled, calls = [], []

    class Recorded(nn.Module):       # as torch.compile's OptimizedModule, a module
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            calls.append(x.shape[0])
            return self.inner(x)

    def fake(module, **kwargs):
        compiled.append(type(module))
        return Recorded(module)
    monkeypatch.setattr(torch, "compile", fake)
    monkeypatch.setattr(accel.isa_warmup, "start", lambda: None)
    model = build_model("lenetspp").to(memory_format=torch.channels_last)
    forward = accel.compiled_forward(model, 4, torch.device("cpu"), blocks=True)
    assert compiled == [blocks.NormAct] * 6
    forward(torch.randn(4, 1, 28, 28))
    assert calls == [4] * 6                 # each block of a full batch through its compiled form
    forward(torch.randn(3, 1, 28, 28))
    assert calls == [4] * 6                 # a partial batch: the eager model
