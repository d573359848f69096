"""The rule that turns torch.compile on where it pays, and the start line that says so."""
import re

import pytest
import torch
from support.data import make_dataset
from typer.testing import CliRunner

from centerloss.device import accel, compile_rule
from centerloss.device.compile_rule import (
    BLOCKS_COMPILE_SECONDS,
    BLOCKS_SAVED_SHARE,
    CACHED_COMPILE_SECONDS,
    COMPILE_SECONDS,
    decide,
)
from centerloss.device.runtime import Runtime
from centerloss.model import nets
from cli.main import app

CPU_BF16 = Runtime(torch.device("cpu"), "bf16")
AMX = {"threads": 2, "compiler": True, "amx": True}


@pytest.fixture
def native(monkeypatch):
    monkeypatch.setattr(compile_rule, "native_bf16", lambda device: True)


def test_the_flag_wins_either_way():
    assert decide(True, Runtime(torch.device("cpu"), "fp32"), "seed", 10) == \
        compile_rule.CompileChoice(True, "--compile")
    assert decide(False, CPU_BF16, "lenetspp", 10 ** 9, **AMX).note == "eager (--no-compile)"


def test_a_long_lenetspp_run_in_bf16_on_amx_compiles_and_a_short_one_does_not(native):
    # break-even of the whole compile alone: images / (rate x threads) x saved share = its seconds
    rate = compile_rule.EAGER_IMAGES_PER_S_PER_THREAD["lenetspp"] * 2
    even = COMPILE_SECONDS * rate / compile_rule.SAVED_SHARE["lenetspp"]
    long, short = decide(None, CPU_BF16, "lenetspp", int(even * 1.1), **AMX, blocks_ok=False), \
        decide(None, CPU_BF16, "lenetspp", int(even * 0.9), **AMX, blocks_ok=False)
    assert long.on and re.fullmatch(r"compiled \(auto: saves ~\d+ s over [\d,]+ images, compiling "
                                    r"takes ~30 s\)", long.note)
    assert not short.on and short.note.startswith("eager (auto: would save ~")
    assert "in blocks" not in short.note            # not offered: not a choice for this run
    assert decide(None, CPU_BF16, "lenetspp", 12 * 60000, **AMX).on        # the default MNIST run
    assert not decide(None, CPU_BF16, "lenetspp", 60000, **AMX).on         # one epoch: not repaid


def test_the_rule_takes_the_shortest_of_eager_blocks_and_whole(native, blocks_pay):
    """Eager below the blocks' break-even, in blocks between it and where the whole compile's
    larger saving repays its longer compile, whole beyond."""
    rate = compile_rule.EAGER_IMAGES_PER_S_PER_THREAD["lenetspp"] * 2
    share, blocks_share = compile_rule.SAVED_SHARE["lenetspp"], BLOCKS_SAVED_SHARE["lenetspp"]
    to_blocks = BLOCKS_COMPILE_SECONDS * rate / blocks_share
    to_whole = (COMPILE_SECONDS - BLOCKS_COMPILE_SECONDS) * rate / (share - blocks_share)
    assert to_blocks * 1.1 < to_whole * 0.9
    for images, expected in ((to_blocks * 0.9, "eager"), (to_blocks * 1.1, "blocks"),
                             (to_whole * 0.9, "blocks"), (to_whole * 1.1, True)):
        choice = decide(None, CPU_BF16, "lenetspp", int(images), **AMX)
        assert choice.value == (expected if expected != "eager" else False), (images, choice)
    in_blocks = decide(None, CPU_BF16, "lenetspp", int(to_blocks * 1.1), **AMX)
    assert re.fullmatch(
        r"compiled in blocks \(auto: saves ~\d+ s over [\d,]+ images, compiling its BatchNorm \+ "
        r"PReLU blocks takes ~18 s; the whole model would save ~\d+ s after ~30 s\)",
        in_blocks.note), in_blocks.note
    # under DistributedDataParallel (blocks_ok False) a run that would compile in blocks compiles
    # whole where that pays, else stays eager
    whole_alone = COMPILE_SECONDS * rate / share
    assert to_blocks * 1.1 < whole_alone * 0.9
    assert decide(None, CPU_BF16, "lenetspp", int(whole_alone * 1.1), **AMX, blocks_ok=False).value is True
    assert decide(None, CPU_BF16, "lenetspp", int(whole_alone * 0.9), **AMX, blocks_ok=False).value is False


def test_on_the_amx_xeon_up_to_three_mnist_epochs_stay_eager_and_longer_runs_compile_whole(native):
    """The figures measured since the eager model pools first: blocks (which cannot) no longer pay
    on 2 threads; three epochs of MNIST stay eager, four compile whole."""
    for epochs in (1, 2, 3):
        choice = decide(None, CPU_BF16, "lenetspp", epochs * 60000, **AMX)
        assert choice.value is False, (epochs, choice)
    one_epoch = decide(None, CPU_BF16, "lenetspp", 60000, **AMX)
    assert re.fullmatch(r"eager \(auto: would save ~[\d.]+ s over 60,000 images, less than the ~30 s "
                        r"compiling takes; ~[\d.]+ s in blocks, less than their ~18 s\)",
                        one_epoch.note), one_epoch.note
    for epochs in (4, 12):
        assert decide(None, CPU_BF16, "lenetspp", epochs * 60000, **AMX).value is True, epochs
    assert not any(decide(None, CPU_BF16, "lenetspp", n, **AMX).blocks
                   for n in range(60000, 2_000_000, 20000))


def test_compile_blocks_in_a_config_forces_them():
    choice = decide("blocks", Runtime(torch.device("cpu"), "fp32"), "seed", 10)
    assert choice.on and choice.blocks and choice.value == "blocks"
    assert choice.note == "compiled in blocks (compile: blocks)"
    assert decide(False, CPU_BF16, "lenetspp", 10 ** 9, **AMX).value is False


def test_a_model_in_inductors_cache_compiles_for_a_shorter_run(native):
    asked = []

    def cached(blocks):
        asked.append(blocks)
        return not blocks
    one_epoch = decide(None, CPU_BF16, "lenetspp", 60000, **AMX, cached=cached)
    assert one_epoch.on and not one_epoch.blocks and asked == [False]
    assert one_epoch.note.endswith("compiling takes ~3 s, inductor's cache holds this model)")
    assert not decide(None, CPU_BF16, "lenetspp", 60000, **AMX, cached=lambda blocks: False).on
    # the blocks in the cache: one epoch compiles them
    in_blocks = decide(None, CPU_BF16, "lenetspp", 60000, **AMX, cached=lambda blocks: blocks)
    assert in_blocks.value == "blocks" and "takes ~3 s, inductor's cache holds them;" in in_blocks.note
    # below what even a cached compile costs, the cache is not asked (it imports inductor)
    rate = compile_rule.EAGER_IMAGES_PER_S_PER_THREAD["lenetspp"] * 2
    tiny = int(CACHED_COMPILE_SECONDS * rate / compile_rule.SAVED_SHARE["lenetspp"] * 0.9)
    choice = decide(None, CPU_BF16, "lenetspp", tiny, **AMX, cached=cached)
    assert not choice.on and len(asked) == 1 and "even from inductor's cache" in choice.note
    # a forced choice and a CPU where compiling never pays do not ask either
    decide(True, CPU_BF16, "lenetspp", 60000, **AMX, cached=cached)
    decide(None, CPU_BF16, "lenetspp", 60000, threads=2, compiler=True, amx=False, cached=cached)
    assert len(asked) == 1


def test_the_rule_keeps_eager_where_compiling_was_not_measured_to_pay(native):
    n = 10 ** 8
    assert not decide(None, Runtime(torch.device("cpu"), "fp32"), "lenetspp", n, **AMX).on
    assert not decide(None, CPU_BF16, "seed", n, **AMX).on
    assert not decide(None, CPU_BF16, "lenetspp", n, threads=2, compiler=True, amx=False).on
    no_cxx = decide(None, CPU_BF16, "lenetspp", n, threads=2, compiler=False, amx=True)
    assert not no_cxx.on and "no C++ compiler" in no_cxx.note


def test_the_start_line_says_whether_the_run_is_compiled(tmp_path):
    tiny_data = make_dataset(tmp_path, n_train=64, n_test=32)
    result = CliRunner().invoke(app, ["train", "--model", "seed", "--epochs", "1", "--precision",
                                      "fp32", "--device", "cpu", "--data-dir", str(tiny_data),
                                      "--out", str(tmp_path / "run"), "--no-live"])
    assert result.exit_code == 0, result.output
    start = result.output.splitlines()[0]
    assert ", cpu fp32, eager (auto: measured to pay only in bf16 on a CPU with AMX), " in start


@pytest.mark.skipif(not compile_rule.has_cpp_compiler(), reason="inductor needs a C++ compiler")
@pytest.mark.parametrize("precision,side", [("fp32", 13), ("bf16", 12)])
def test_the_compiled_block_computes_what_the_eager_one_does(precision, side):
    """LeNets++'s block (conv, BatchNorm, PReLU, max-pooling) compiled as training compiles it
    (accel.compiled_forward: inductor, aggressive fusion, the pooling as four slices) against
    eager (ATen's max_pool2d): the same outputs and gradients within the precision's rounding, on
    an even side and on an odd one (the last row and column are dropped). Small, so that
    compiling takes seconds; the whole net is the same layers, six times."""
    from centerloss.model.nets import MaxPool2d, _conv
    torch.manual_seed(0)
    block = torch.nn.Sequential(*_conv(1, 8, 5), *_conv(8, 8, 5), MaxPool2d())
    block = block.to(memory_format=torch.channels_last)
    x = torch.randn(16, 1, side, side).contiguous(memory_format=torch.channels_last)
    runtime = Runtime(torch.device("cpu"), precision)
    fast = accel.compiled_forward(block, 16, torch.device("cpu"))
    results = []
    for model in (block, fast):
        for p in block.parameters():
            p.grad = None
        with runtime.autocast():
            out = model(x)
        out.float().square().mean().backward()
        results.append([out.detach().float()] + [p.grad.clone() for p in block.parameters()])
    assert results[0][0].shape == (16, 8, side // 2, side // 2)
    tol = {"rtol": 1e-4, "atol": 1e-5} if precision == "fp32" else {"rtol": 0.05, "atol": 0.02}
    for eager, compiled in zip(*results):
        torch.testing.assert_close(compiled, eager, **tol)


@pytest.mark.skipif(not compile_rule.has_cpp_compiler(), reason="inductor needs a C++ compiler")
@pytest.mark.skipif(nets._tiled_weight_grad is None, reason="torch.library.custom_op: torch 2.4")
def test_a_compiled_small_image_conv_takes_its_weight_gradient_over_tiles_as_eager_does():
    """Compiled, the 7 x 7 stage's weight gradient is still the tiled one: inductor calls it as an
    operator (the profiler sees it; eager calls the function itself) and it gives the same bits as
    the eager _SmallImageConv; the forward and the input gradient are ATen's in both."""
    from torch.profiler import profile

    from centerloss.model.nets import Conv2d
    torch.manual_seed(0)
    conv = Conv2d(8, 16, 5, padding=2, bias=False).to(memory_format=torch.channels_last)
    x = torch.randn(6, 8, 7, 7).bfloat16().contiguous(memory_format=torch.channels_last)
    g = torch.randn(6, 16, 7, 7).bfloat16().contiguous(memory_format=torch.channels_last)
    results = []
    for model in (conv, torch.compile(conv, dynamic=False)):
        conv.weight.grad = None
        leaf = x.clone().requires_grad_()
        with profile() as prof, torch.autocast("cpu", dtype=torch.bfloat16):
            y = model(leaf)
            y.backward(g)
        ran = {e.key for e in prof.key_averages()}
        assert ("centerloss::tiled_weight_grad" in ran) == (model is not conv)   # eager: no dispatch
        results.append((y.detach(), leaf.grad, conv.weight.grad.clone()))
    (y1, gx1, gw1), (y2, gx2, gw2) = results
    assert torch.equal(y1, y2) and torch.equal(gx1, gx2) and torch.equal(gw1, gw2)


@pytest.mark.skipif(not compile_rule.has_cpp_compiler(), reason="inductor needs a C++ compiler")
def test_the_compiled_pooling_shares_a_tie_and_keeps_the_gradient():
    """Where a window holds its maximum twice, ATen gives the whole gradient to the first; the
    compiled pooling splits it. Either way a window passes on exactly its output's gradient."""
    from centerloss.model.nets import MaxPool2d
    x = torch.tensor([[5., 5., 1., 2.], [0., 3., 4., 1.]]).view(1, 1, 2, 4).requires_grad_()
    pool = MaxPool2d()
    grads = []
    for model in (pool, torch.compile(pool, dynamic=False)):
        out = model(x)
        assert out.tolist() == [[[[5., 4.]]]]
        grad, = torch.autograd.grad(out, x, torch.tensor([[[[2., 3.]]]]))
        grads.append(grad.view(2, 4))
    eager, compiled = grads
    assert eager.tolist() == [[2., 0., 0., 0.], [0., 0., 3., 0.]]
    assert compiled.tolist() == [[1., 1., 0., 0.], [0., 0., 3., 0.]]
    unbatched = torch.randn(3, 5, 6)           # (C, H, W): ATen's pooling, compiled or not
    assert torch.equal(torch.compile(pool, dynamic=False)(unbatched), pool(unbatched))


@pytest.mark.skipif(not compile_rule.has_cpp_compiler(), reason="inductor needs a C++ compiler")
def test_the_compiled_blocks_compute_what_the_eager_model_does():
    """compile: blocks as training compiles them (inductor, each BatchNorm + PReLU alone): the
    same outputs, gradients and running statistics as eager, within bf16's rounding."""
    from centerloss.model.nets import MaxPool2d, _conv
    torch.manual_seed(0)
    net = torch.nn.Sequential(*_conv(1, 8, 5), *_conv(8, 8, 5), MaxPool2d())
    net = net.to(memory_format=torch.channels_last)
    x = torch.randn(16, 1, 12, 12).contiguous(memory_format=torch.channels_last)
    runtime = Runtime(torch.device("cpu"), "bf16")
    fast = accel.compiled_forward(net, 16, torch.device("cpu"), blocks=True)
    results = []
    for model in (net, fast):
        for p in net.parameters():
            p.grad = None
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.reset_running_stats()
        with runtime.autocast():
            out = model(x)
        out.float().square().mean().backward()
        results.append([out.detach().float(), net[1].running_var.clone()]
                       + [p.grad.clone() for p in net.parameters()])
    for eager, compiled in zip(*results):
        torch.testing.assert_close(compiled, eager, rtol=0.05, atol=0.02)
