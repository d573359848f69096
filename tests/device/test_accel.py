"""Device speed settings: cuDNN modes, --compile, and the CUDA path's promises (no host sync)."""
from pathlib import Path

import pytest
import torch
from support.data import make_dataset
from torch import nn
from typer.testing import CliRunner

from centerloss.config.config import Config
from centerloss.data.types import Split
from centerloss.device import accel, isa_warmup
from centerloss.device.runtime import Runtime
from centerloss.evaluation.inference import infer
from centerloss.model.nets import build_model
from centerloss.store import checkpoint as ckpt_io
from centerloss.train.loop import Callbacks, make_optimizer, train
from cli.main import app


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("data"), n_train=200, n_test=50)


class FakeCompile:
    """Stands in for torch.compile, which takes minutes on a CPU: records which batch sizes reach
    the 'compiled' model."""

    def __init__(self):
        self.sizes = []
        self.kwargs = None

    def __call__(self, model, **kwargs):
        self.kwargs = kwargs

        def compiled(x):
            self.sizes.append(x.shape[0])
            return model(x)
        return compiled


def test_cudnn_mode_sets_then_restores_the_callers_flags():
    cudnn = torch.backends.cudnn
    saved = cudnn.benchmark, cudnn.deterministic
    try:
        cudnn.benchmark, cudnn.deterministic = False, False
        with accel.cudnn_mode(autotune=True):
            assert (cudnn.benchmark, cudnn.deterministic) == (True, False)
        with pytest.raises(RuntimeError), accel.cudnn_mode(autotune=False):
            assert (cudnn.benchmark, cudnn.deterministic) == (False, True)
            raise RuntimeError("restored even so")
        assert (cudnn.benchmark, cudnn.deterministic) == (False, False)
    finally:
        cudnn.benchmark, cudnn.deterministic = saved


def test_training_is_deterministic_and_inference_autotunes(tiny_data, tmp_path):
    cudnn = torch.backends.cudnn
    seen = []

    class Probe(Callbacks):
        def on_batch(self, epoch, batch, batches, images, window):
            seen.append((cudnn.benchmark, cudnn.deterministic))

    train(Config(model="seed", epochs=1, batch_size=100, data_dir=str(tiny_data)), tmp_path / "r", Probe())
    assert seen == [(False, True)] * 2

    class FlagModel(nn.Module):
        def forward(self, x):
            seen.append((cudnn.benchmark, cudnn.deterministic))
            flat = x.flatten(1)
            return flat[:, :2], flat[:, :10]

    seen.clear()
    split = Split(torch.zeros(3, 28, 28, dtype=torch.uint8), torch.zeros(3, dtype=torch.long))
    infer(FlagModel(), split, 0.0, 1.0, Runtime(torch.device("cpu"), "fp32"))
    assert seen == [(True, False)]


def test_cpu_inference_batch_follows_the_thread_count():
    sizes = []

    class SizeModel(nn.Module):
        def forward(self, x):
            sizes.append(x.shape[0])
            flat = x.flatten(1)
            return flat[:, :2], flat[:, :10]

    split = Split(torch.zeros(600, 28, 28, dtype=torch.uint8), torch.zeros(600, dtype=torch.long))
    cpu = torch.device("cpu")
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        features, logits = infer(SizeModel(), split, 0.0, 1.0, Runtime(cpu, "fp32"))
        assert sizes == [128] * 4 + [88] and features.shape == (600, 2) and logits.shape == (600, 10)
        torch.set_num_threads(2)
        sizes.clear()
        infer(SizeModel(), split, 0.0, 1.0, Runtime(cpu, "fp32"))
        assert sizes == [128] * 4 + [88]     # two threads too: see inference_batch_size
    finally:
        torch.set_num_threads(threads)
    sizes.clear()
    infer(SizeModel(), split, 0.0, 1.0, Runtime(cpu, "fp32"), batch_size=200)
    assert sizes == [200, 200, 200]
    assert accel.inference_batch_size(torch.device("cuda")) == 2048


def test_compiled_forward_leaves_partial_batches_to_the_eager_model(tiny_data, tmp_path, monkeypatch):
    fake = FakeCompile()
    monkeypatch.setattr(torch, "compile", fake)
    started = []
    monkeypatch.setattr(isa_warmup, "start", lambda: started.append(1))
    cfg = Config(model="seed", epochs=2, batch_size=64, data_dir=str(tiny_data), compile=True)
    train(cfg, tmp_path / "r")
    # 200 images: three full batches of 64 per epoch compiled, the last 8 eager
    assert fake.sizes == [64, 64, 64] * 2
    assert fake.kwargs == {"dynamic": False, "options": {"aggressive_fusion": True}}   # on the CPU
    assert started == [1]       # inductor's ISA checks ahead, once for the run
    ckpt = ckpt_io.load_checkpoint(tmp_path / "r" / "model.safetensors")
    assert ckpt.config.compile is True
    assert set(ckpt.model_state) == set(build_model("seed").state_dict())   # no "_orig_mod." prefix


class FakeISA:
    def __init__(self, name, ok, order):
        self.name, self.ok, self.order = name, ok, order

    def __str__(self):
        return self.name

    def __bool__(self):
        self.order.append(self.name)
        return self.ok


def test_isa_warmup_checks_what_the_cpu_has_narrowest_first(monkeypatch):
    from torch._inductor import cpu_vec_isa
    order = []
    isas = [FakeISA("avx512 avx512_vnni amx_tile", True, order),
            FakeISA("avx512 avx512_vnni", True, order), FakeISA("avx512", False, order),
            FakeISA("avx2", True, order), FakeISA("asimd", True, order)]
    monkeypatch.setattr(cpu_vec_isa, "supported_vec_isa_list", isas)
    monkeypatch.setattr(cpu_vec_isa, "x86_isa_checker", lambda: ["avx2", "avx512"])
    # inductor checks widest first; the child the other way round, so the two meet in the middle
    assert isa_warmup.check_all() == ["avx2"]
    assert order == ["avx2", "avx512"]      # no VNNI or AMX on this CPU, no NEON on any x86


def test_isa_warmup_starts_a_child_only_where_inductor_checks(monkeypatch):
    calls = []
    monkeypatch.setattr(isa_warmup.subprocess, "Popen", lambda args, **kw: calls.append(args) or "p")
    monkeypatch.setattr(isa_warmup.sys, "platform", "linux")
    monkeypatch.setattr(isa_warmup.platform, "machine", lambda: "x86_64")
    assert isa_warmup.start() == "p"
    assert calls == [[isa_warmup.sys.executable, "-m", "centerloss.device.isa_warmup"]]
    monkeypatch.setattr(isa_warmup.platform, "machine", lambda: "aarch64")
    assert isa_warmup.start() is None and len(calls) == 1

    def refused(args, **kw):
        raise OSError("no more processes")
    monkeypatch.setattr(isa_warmup.platform, "machine", lambda: "x86_64")
    monkeypatch.setattr(isa_warmup.subprocess, "Popen", refused)
    assert isa_warmup.start() is None       # the parent checks on its own, as without the child
    monkeypatch.setattr(isa_warmup.sys, "executable", "")
    assert isa_warmup.start() is None       # an embedded interpreter: no child to start


def test_old_configs_without_compile_still_load():
    text = Config().to_json().replace(', "compile": null', "")
    assert "compile" not in text
    assert Config.from_json(text).compile is None       # the rule decides, as for a new run
    assert Config.from_json(Config(compile=False).to_json()).compile is False


def test_compile_without_a_cpp_compiler_is_a_one_line_error(tiny_data, tmp_path, monkeypatch):
    monkeypatch.setattr(accel.shutil, "which", lambda name: None)
    monkeypatch.setenv("CXX", "")
    result = CliRunner().invoke(app, ["train", "--model", "seed", "--epochs", "1", "--compile",
                                      "--data-dir", str(tiny_data), "--out", str(tmp_path / "r")])
    assert result.exit_code == 1
    assert result.output.startswith("error: --compile on the CPU needs a C++ compiler")
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "r" / "model.safetensors").exists()


def test_cpu_keeps_the_default_optimizer():
    opt = make_optimizer(nn.Linear(3, 2), Config())
    assert not opt.defaults["fused"]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_epoch_never_waits_for_the_device(tiny_data, tmp_path):
    """Every batch runs with CUDA's sync debug mode set to raise: a .item(), a bool test of a
    tensor or a blocking copy in the loop would fail the run. The epoch-end read is allowed."""

    class NoSync(Callbacks):
        def __init__(self):
            self.batches = 0

        def on_epoch_start(self, epoch, batches):
            torch.cuda.set_sync_debug_mode("error")

        def on_batch(self, epoch, batch, batches, images, window):
            self.batches += 1
            if batch == batches:
                torch.cuda.set_sync_debug_mode("default")

    probe = NoSync()
    try:
        cfg = Config(model="lenetspp", epochs=1, batch_size=64, data_dir=str(tiny_data), device="cuda")
        train(cfg, tmp_path / "r", probe)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    assert probe.batches == 4
    model = nn.Linear(3, 2).cuda()
    assert make_optimizer(model, Config()).defaults["fused"] is True


@pytest.mark.parametrize("classes, trims", [(10, 0), (2048, 0), (4096, 2)])
def test_inference_trims_the_heap_only_after_large_logits(monkeypatch, classes, trims):
    """A trim after every batch made MNIST's evaluation fault its pages in anew each batch; it is
    kept for batches whose fp32 logits take 1 MiB or more (4,096 classes at 64 images here)."""
    from centerloss.evaluation import inference

    class Wide(nn.Module):
        def forward(self, x):
            return x.flatten(1)[:, :2], torch.zeros(x.shape[0], classes)

    calls = []
    monkeypatch.setattr(inference.cpu, "release_free_memory", lambda: calls.append(1))
    split = Split(torch.zeros(150, 8, 8, dtype=torch.uint8), torch.zeros(150, dtype=torch.long))
    features, logits = infer(Wide(), split, 0.0, 1.0, Runtime(torch.device("cpu"), "fp32"),
                             batch_size=64)
    assert logits.shape == (150, classes)
    # batches of 64, 64 and 22: at 4,096 classes even the last (22 x 4,096 x 4 bytes) is under
    # 1 MiB, so two trims; at 2,048 the largest batch's 512 KiB never reaches it
    assert len(calls) == trims
