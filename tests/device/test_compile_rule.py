"""The rule that turns torch.compile on where it pays, and the start line that says so."""
import re

import pytest
import torch
from support.data import make_dataset
from typer.testing import CliRunner

from centerloss.device import accel, compile_rule
from centerloss.device.compile_rule import CACHED_COMPILE_SECONDS, COMPILE_SECONDS, decide
from centerloss.device.runtime import Runtime
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
    # break-even: images / (rate x threads) x saved share = compile seconds
    rate = compile_rule.EAGER_IMAGES_PER_S_PER_THREAD["lenetspp"] * 2
    even = COMPILE_SECONDS * rate / compile_rule.SAVED_SHARE["lenetspp"]
    long, short = decide(None, CPU_BF16, "lenetspp", int(even * 1.1), **AMX), \
        decide(None, CPU_BF16, "lenetspp", int(even * 0.9), **AMX)
    assert long.on and re.fullmatch(r"compiled \(auto: saves ~\d+ s over [\d,]+ images, compiling "
                                    r"takes ~30 s\)", long.note)
    assert not short.on and short.note.startswith("eager (auto: would save ~")
    assert decide(None, CPU_BF16, "lenetspp", 12 * 60000, **AMX).on        # the default MNIST run
    assert not decide(None, CPU_BF16, "lenetspp", 60000, **AMX).on         # one epoch: not repaid


def test_a_model_in_inductors_cache_compiles_for_a_shorter_run(native):
    asked = []

    def cached():
        asked.append(1)
        return True
    one_epoch = decide(None, CPU_BF16, "lenetspp", 60000, **AMX, cached=cached)
    assert one_epoch.on and asked == [1]
    assert one_epoch.note.endswith("compiling takes ~3 s, inductor's cache holds this model)")
    assert not decide(None, CPU_BF16, "lenetspp", 60000, **AMX, cached=lambda: False).on
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
