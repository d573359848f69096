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


@pytest.mark.parametrize("shape, channels, layout", [((8, 6, 5, 5), 6, torch.channels_last),
                                                     ((8, 6, 5, 5), 6, torch.contiguous_format),
                                                     ((8, 6, 5, 5), 1, torch.channels_last),
                                                     ((8, 2), 1, torch.contiguous_format)])
def test_prelu_training_pass_matches_aten_in_values_and_gradients(shape, channels, layout):
    from torch import nn

    from centerloss.model.nets import PReLU
    torch.manual_seed(0)
    ours, aten = PReLU(channels), nn.PReLU(channels)
    with torch.no_grad():
        ours.weight.uniform_(0.1, 0.4)
        aten.weight.copy_(ours.weight)
    x = torch.randn(shape).bfloat16().contiguous(memory_format=layout).requires_grad_()
    x.data[(0,) * (x.ndim - 1)][:2] = 0            # exact zeros take the slope, as in ATen
    x2 = x.detach().clone().requires_grad_()
    g = torch.randn(shape).bfloat16()
    y = ours(x)
    y2 = torch.nn.functional.prelu(x2, aten.weight.bfloat16())   # what autocast runs
    assert torch.equal(y, y2)                      # the forward values are the same, bit for bit
    y.backward(g)
    y2.backward(g)
    assert torch.equal(x.grad, x2.grad)            # and so are the input's gradients
    # the slopes' gradient: the sum of g * min(x, 0) over all but the channels, accumulated in
    # fp32, so within fp32's rounding of the exact sum (ATen's, from bf16 products, is not)
    xd, gd = x.detach().double(), g.double()
    dims = [d for d in range(x.ndim) if d != 1 or channels == 1]
    exact = (gd * xd.clamp_max(0)).sum(dims).view_as(ours.weight)
    torch.testing.assert_close(ours.weight.grad.double(), exact, rtol=1e-5, atol=1e-6)
    assert torch.allclose(ours.weight.grad, aten.weight.grad, rtol=5e-2, atol=1e-2)
    assert ours.state_dict().keys() == aten.state_dict().keys()


def test_flatten_hands_a_channels_last_input_its_gradient_channels_last():
    from torch import nn

    from centerloss.model.nets import Flatten
    torch.manual_seed(0)
    leaf = torch.randn(3, 4, 5, 5).contiguous(memory_format=torch.channels_last).requires_grad_()
    grads = {}

    def through(flatten, name):     # what reaches the layer before: a leaf's .grad would be
        x = leaf * 1                # laid out as the leaf whatever arrived
        x.register_hook(lambda g: grads.setdefault(name, g))
        return flatten(x)
    g = torch.randn(3, 100)
    y, y2 = through(Flatten(), "ours"), through(nn.Flatten(), "autograd's")
    assert torch.equal(y, y2)                   # C, H, W order, as nn.Flatten
    y.backward(g)
    y2.backward(g)
    ours, autograds = grads["ours"], grads["autograd's"]
    assert torch.equal(ours, autograds)
    assert ours.is_contiguous(memory_format=torch.channels_last) and not ours.is_contiguous()
    assert autograds.is_contiguous()            # NCHW: what the pooling got before
    with torch.no_grad():
        assert torch.equal(Flatten()(leaf), y2)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_seed_net_pools_before_relu_and_computes_what_the_blogs_order_does(precision):
    """The seed net's pooling before its ReLU against the blog's order (ReLU, then pooling), with
    the same weights: the same outputs and the same gradients, bit for bit, also where windows
    hold ties (every other row of the input zero, so the conv gives equal values there) and no
    positive value."""
    from torch import nn

    from centerloss.model.nets import SeedNet
    torch.manual_seed(0)
    ours = SeedNet().to(memory_format=torch.channels_last)
    assert [type(m) for m in ours.body[:6]] == [type(ours.body[0]), nn.MaxPool2d, nn.ReLU,
                                               nn.Conv2d, nn.MaxPool2d, nn.ReLU]
    blogs = SeedNet().to(memory_format=torch.channels_last)
    blogs.load_state_dict(ours.state_dict())
    b = blogs.body
    b[1], b[2], b[4], b[5] = b[2], b[1], b[5], b[4]
    x = torch.randn(8, 1, 28, 28)
    x[:, :, ::2] = 0                                         # ties among zeros after the conv
    x = x.contiguous(memory_format=torch.channels_last)
    results = []
    for net in (ours, blogs):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            features, logits = net(x)
        (features.float().square().sum() + logits.float().sum()).backward()
        results.append([features, logits] + [p.grad for p in net.parameters()])
    for a, b in zip(*results):
        assert torch.equal(a, b)


def _call_order(net: torch.nn.Module, x: torch.Tensor) -> list[str]:
    """Which of LeNets++'s PReLUs and poolings ran, in order ('a' a PReLU, 'p' a pooling)."""
    from torch import nn
    order, hooks = [], []
    for m in net.body:
        if isinstance(m, (nn.PReLU, nn.MaxPool2d)):
            tag = "a" if isinstance(m, nn.PReLU) else "p"
            hooks.append(m.register_forward_pre_hook(lambda mod, args, tag=tag: order.append(tag)))
    net(x)
    for h in hooks:
        h.remove()
    return order


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_lenetspp_pools_before_a_prelu_with_nonnegative_slopes_and_computes_the_same(precision):
    """nets.PoolFirst against the order as written (a plain Sequential of the same layers): the
    same features, logits and input gradient bit for bit, the same parameter gradients but for
    the pooled PReLUs' slopes, the same sum over a quarter of the positions (the others add
    zeros) in another order."""
    from torch import nn
    torch.manual_seed(0)
    ours = build_model("lenetspp").to(memory_format=torch.channels_last)
    written = build_model("lenetspp").to(memory_format=torch.channels_last)
    written.load_state_dict(ours.state_dict())
    written.body = nn.Sequential(*written.body)
    x = torch.randn(16, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    assert _call_order(ours, x) == list("apaapaapa")          # each pooling before its PReLU
    assert _call_order(written, x) == list("aapaapaap")
    results = []
    for net in (ours, written):
        leaf = x.clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            features, logits = net(leaf)
        (features.float().square().sum() + logits.float().sum()).backward()
        results.append(dict(features=features, logits=logits, x=leaf.grad,
                            **{n: p.grad for n, p in net.named_parameters()}))
    pooled = {f"body.{i}.weight" for i in (5, 12, 19)}
    assert all(isinstance(ours.body[int(n.split(".")[1])], nn.PReLU) for n in pooled)
    for name, a in results[0].items():
        if name in pooled:
            torch.testing.assert_close(a, results[1][name], rtol=1e-4, atol=0)
        else:
            assert torch.equal(a, results[1][name]), name
    with torch.no_grad():                                   # evaluation pools first as well
        assert torch.equal(ours.eval()(x)[0], written.eval()(x)[0])


def test_lenetspp_keeps_the_written_order_where_pooling_first_would_differ(monkeypatch):
    """A negative slope makes PReLU non-monotone: that pair runs as written, the others still
    pool first; compiling (inductor fuses the pairs its own way) keeps every pair as written."""
    torch.manual_seed(0)
    net = build_model("lenetspp")
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        net.body[12].weight[3] = -0.1
    assert _call_order(net, x) == list("apaaapapa")           # the middle pair as written
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    assert _call_order(net, x) == list("aapaapaap")


def test_tiles_put_four_images_to_a_picture_with_zero_gaps():
    from centerloss.model.nets import _tiles
    t = torch.arange(1, 6 * 2 * 3 * 3 + 1, dtype=torch.float32).view(6, 2, 3, 3)
    tiled = _tiles(t.contiguous(memory_format=torch.channels_last), (2, 1))
    assert tiled.shape == (2, 2, 8, 7) and tiled.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(tiled[0, :, 0:3, 0:3], t[0]) and torch.equal(tiled[0, :, 0:3, 4:7], t[1])
    assert torch.equal(tiled[0, :, 5:8, 0:3], t[2]) and torch.equal(tiled[0, :, 5:8, 4:7], t[3])
    assert torch.equal(tiled[1, :, 0:3, 0:3], t[4]) and torch.equal(tiled[1, :, 0:3, 4:7], t[5])
    assert (tiled[1, :, 5:8] == 0).all()                     # the batch made a multiple of four
    assert (tiled[:, :, 3:5] == 0).all() and (tiled[:, :, :, 3] == 0).all()   # the gaps
    assert tiled.sum() == t.sum()


@pytest.mark.parametrize("batch, side, kernel", [(6, 7, 5), (4, 5, 3), (8, 8, 5)])
def test_small_image_conv_matches_aten_and_takes_the_weight_gradient_over_tiles(batch, side, kernel):
    from torch import nn

    from centerloss.model.nets import Conv2d
    torch.manual_seed(0)
    ours = Conv2d(8, 16, kernel, padding=kernel // 2, bias=False).to(memory_format=torch.channels_last)
    aten = nn.Conv2d(8, 16, kernel, padding=kernel // 2, bias=False).to(memory_format=torch.channels_last)
    aten.load_state_dict(ours.state_dict())
    x = torch.randn(batch, 8, side, side).bfloat16().contiguous(memory_format=torch.channels_last)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y1, y2 = ours(x1), aten(x2)
    assert type(y1.grad_fn).__name__ == "_SmallImageConvBackward"
    assert torch.equal(y1, y2)                              # ATen's forward, bit for bit
    g = torch.randn_like(y1)
    y1.backward(g)
    y2.backward(g)
    assert torch.equal(x1.grad, x2.grad)                    # and its input gradient
    exact = torch.ops.aten.convolution_backward(
        g.double(), x.double(), ours.weight.detach().double(), None, [1, 1], [kernel // 2] * 2, [1, 1], False,
        [0, 0], 1, [False, True, False])[1]
    err = {name: float((conv.weight.grad.double() - exact).norm() / exact.norm())
           for name, conv in (("ours", ours), ("aten", aten))}
    assert ours.weight.grad.dtype == torch.float32 and err["ours"] < 1.5 * err["aten"] + 1e-6
    assert err["ours"] < 1e-2                               # bf16's rounding of the sum, no more


def test_without_torch_2_4s_custom_op_a_compiled_model_keeps_atens_convolutions(monkeypatch):
    """torch.library.custom_op as torch 2.4 made it (a function and a schema) is what the compiled
    tiles need; where torch lacks it, no operator, and a compiling model's convs stay ATen's."""
    from centerloss.model import nets

    def old_custom_op(name, *, mutates_args):           # torch 2.4's nightlies: no fn, no schema
        raise AssertionError("not reached")
    monkeypatch.setattr(torch.library, "custom_op", old_custom_op)
    assert nets._tiled_weight_grad_operator() is None
    monkeypatch.delattr(torch.library, "custom_op")
    assert nets._tiled_weight_grad_operator() is None
    monkeypatch.setattr(nets, "_tiled_weight_grad", None)
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)
    conv = nets.Conv2d(4, 4, 5, padding=2, bias=False)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not conv._small_images(torch.randn(2, 4, 7, 7, requires_grad=True))
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: False)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert conv._small_images(torch.randn(2, 4, 7, 7, requires_grad=True))   # eager: tiles


def test_small_image_conv_only_where_it_was_measured():
    from centerloss.model.nets import Conv2d
    conv = Conv2d(4, 4, 5, padding=2, bias=False)
    small = torch.randn(2, 4, 7, 7, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert type(conv(small).grad_fn).__name__ == "_SmallImageConvBackward"
        assert type(conv(torch.randn(2, 4, 9, 9)).grad_fn).__name__ != "_SmallImageConvBackward"
        with torch.no_grad():
            assert conv(small).grad_fn is None
        assert type(Conv2d(4, 4, 5, padding=1, bias=False)(small).grad_fn).__name__ != \
            "_SmallImageConvBackward"                       # not 'same'
        assert type(Conv2d(4, 4, 5, padding=2)(small).grad_fn).__name__ != \
            "_SmallImageConvBackward"                       # a bias
    assert type(conv(small).grad_fn).__name__ != "_SmallImageConvBackward"      # fp32


def test_prelu_passes_on_the_bits_match_aten_for_every_bf16_value():
    from centerloss.model.nets import _negative_part, _where_positive
    every = torch.arange(-2**15, 2**15, dtype=torch.int32).to(torch.int16).view(torch.bfloat16)
    numbers = every[~every.isnan()]             # all 65,536 bit patterns but the NaNs
    assert numbers.numel() > 65_000
    ours = _negative_part(numbers)
    assert torch.equal(ours, numbers.clamp_max(0))  # -0 == +0; infinities and subnormals included
    assert (ours.view(torch.int16) <= 0).all()  # never a positive bit pattern
    g = torch.randn(numbers.shape).bfloat16()
    g[:100] = -0.0
    bits = torch.ops.aten.threshold_backward(g, numbers, 0).view(torch.int16)
    assert torch.equal(_where_positive(g, numbers).view(torch.int16), bits)     # bit for bit
    grid = numbers[:4096].reshape(4, 4, 16, 16).contiguous(memory_format=torch.channels_last)
    assert torch.equal(_negative_part(grid), grid.clamp_max(0))   # any layout
    g4 = g[:4096].reshape(4, 4, 16, 16)
    assert torch.equal(_where_positive(g4, grid).view(torch.int16),
                       torch.ops.aten.threshold_backward(g4, grid, 0).view(torch.int16))


def test_prelu_training_pass_computes_only_the_gradients_asked_for():
    from centerloss.model.nets import PReLU
    torch.manual_seed(0)
    prelu = PReLU(4)
    x = torch.randn(3, 4, 5, 5).bfloat16()
    g = torch.randn(3, 4, 5, 5).bfloat16()
    prelu(x).backward(g)                    # the input needs no gradient: the slopes get theirs
    exact = (g.double() * x.double().clamp_max(0)).sum((0, 2, 3))
    torch.testing.assert_close(prelu.weight.grad.double(), exact, rtol=1e-5, atol=1e-6)
    prelu.weight.grad = None
    prelu.weight.requires_grad_(False)      # frozen slopes: the input's gradient alone
    xg = x.clone().requires_grad_()
    prelu(xg).backward(g)
    assert prelu.weight.grad is None
    assert torch.equal(xg.grad, torch.where(x > 0, g, g * prelu.weight.bfloat16().view(1, -1, 1, 1)))


@pytest.mark.parametrize("layout", [torch.channels_last, torch.contiguous_format])
def test_a_one_channel_conv_computes_what_torch_s_does(layout):
    """nets.Conv2d pads a one-channel input to two on the CPU (a faster kernel): the output and
    the gradients of the input and of the weight are nn.Conv2d's, and so are the parameters."""
    from centerloss.model.nets import Conv2d
    torch.manual_seed(0)
    ours = Conv2d(1, 8, 5, padding=2, bias=True).to(memory_format=layout)
    theirs = torch.nn.Conv2d(1, 8, 5, padding=2, bias=True).to(memory_format=layout)
    theirs.load_state_dict(ours.state_dict())
    assert set(ours.state_dict()) == {"weight", "bias"} and ours.weight.shape == (8, 1, 5, 5)
    x = torch.randn(4, 1, 12, 12).contiguous(memory_format=layout)
    grads = []
    for conv in (ours, theirs):
        xi = x.clone().requires_grad_()
        out = conv(xi)
        assert out.is_contiguous(memory_format=layout)
        out.square().sum().backward()
        grads.append((out.detach(), xi.grad, conv.weight.grad, conv.bias.grad))
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
