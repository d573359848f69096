"""The marker that tells the compile rule inductor's cache holds a model compiled before."""
import re

import torch
from support.data import make_dataset
from torch._inductor import config as inductor_config

from centerloss.config import file as config_file
from centerloss.config.config import Config
from centerloss.device import accel, compile_cache, isa_warmup
from centerloss.device.runtime import Runtime
from centerloss.model.nets import build_model
from centerloss.train.loop import train

CPU_BF16 = Runtime(torch.device("cpu"), "bf16")


def test_the_key_names_what_decides_the_compiled_graph():
    lenet, seed = build_model("lenetspp"), build_model("seed")
    key = compile_cache.graph_key(lenet, 128, (1, 28, 28), CPU_BF16)
    assert key == compile_cache.graph_key(build_model("lenetspp"), 128, (1, 28, 28), CPU_BF16)
    others = {compile_cache.graph_key(seed, 128, (1, 28, 28), CPU_BF16),
              compile_cache.graph_key(build_model("lenetspp", num_classes=100), 128, (1, 28, 28),
                                      CPU_BF16),
              compile_cache.graph_key(lenet, 256, (1, 28, 28), CPU_BF16),
              compile_cache.graph_key(lenet, 128, (1, 32, 32), CPU_BF16),
              compile_cache.graph_key(lenet, 128, (1, 28, 28), Runtime(torch.device("cpu"), "fp32")),
              compile_cache.graph_key(lenet, 128, (1, 28, 28), CPU_BF16, world=2),
              compile_cache.graph_key(lenet, 128, (1, 28, 28), CPU_BF16, blocks=True)}
    assert key not in others and len(others) == 7


def test_the_marker_lives_in_inductors_cache_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    assert not compile_cache.holds("k1")
    compile_cache.remember("k1")
    assert compile_cache.holds("k1") and not compile_cache.holds("k2")
    assert (tmp_path / "inductor" / "centerloss" / "k1.compiled").is_file()
    with inductor_config.patch(fx_graph_cache=False):
        assert not compile_cache.holds("k1")    # a cache turned off holds nothing for the rule
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor" / "centerloss" / "k1.compiled" / "x"))
    compile_cache.remember("k3")                # a folder it cannot make: no marker, no error
    assert not compile_cache.holds("k3")


def test_a_compiled_run_leaves_the_marker_and_config_yaml_keeps_the_rules_choice(tmp_path,
                                                                                monkeypatch):
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    monkeypatch.setattr(torch, "compile", lambda model, **kw: model)     # minutes on a CPU
    monkeypatch.setattr(isa_warmup, "start", lambda: None)
    data = make_dataset(tmp_path / "data", n_train=96, n_test=32)
    markers = tmp_path / "inductor" / "centerloss"
    train(Config(model="seed", epochs=1, batch_size=32, data_dir=str(data), precision="fp32",
                 compile=False), tmp_path / "eager")
    assert not markers.exists()
    train(Config(model="seed", epochs=1, batch_size=32, data_dir=str(data), precision="fp32",
                 compile=True), tmp_path / "compiled")
    key = compile_cache.graph_key(build_model("seed"), 32, (1, 28, 28),
                                  Runtime(torch.device("cpu"), "fp32"))
    assert [p.name for p in markers.iterdir()] == [f"{key}.compiled"]
    assert compile_cache.holds(key)
    # a run left to the rule: config.yaml holds its choice, so a repeat from it trains the same way
    train(Config(model="seed", epochs=1, batch_size=32, data_dir=str(data), precision="fp32"),
          tmp_path / "ruled")
    text = (tmp_path / "ruled" / "config.yaml").read_text()
    line = next(li for li in text.splitlines() if li.startswith("compile:"))
    assert line.startswith("compile: false  # chosen by the rule (auto: measured to pay only in "
                           "bf16") and line.endswith("null lets it choose again")
    assert config_file.parse(text, "config.yaml")["compile"] is False
    forced = (tmp_path / "compiled" / "config.yaml").read_text()
    assert "compile: true\n" in forced           # the user's own flag, no note


def test_on_compiled_runs_once_after_the_first_full_batch(monkeypatch):
    monkeypatch.setattr(torch, "compile", lambda model, **kw: model)
    monkeypatch.setattr(isa_warmup, "start", lambda: None)
    calls = []
    forward = accel.compiled_forward(build_model("seed"), 4, torch.device("cpu"),
                                     on_compiled=lambda: calls.append(1))
    forward(torch.zeros(3, 1, 28, 28))          # a partial batch runs eager: not compiled yet
    assert calls == []
    forward(torch.zeros(4, 1, 28, 28))
    forward(torch.zeros(4, 1, 28, 28))
    assert calls == [1]


def test_a_run_the_rule_compiles_in_blocks_says_so_and_leaves_their_marker(tmp_path, monkeypatch,
                                                                          blocks_pay):
    from centerloss.device import compile_rule
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    compiled = []
    monkeypatch.setattr(torch, "compile", lambda model, **kw: compiled.append(type(model)) or model)
    monkeypatch.setattr(isa_warmup, "start", lambda: None)
    # this CPU as the AMX Xeon the rule was measured on, with the figures of a machine where
    # blocks pay, and 96 images as long as ~120 s eager: a run in the window where the blocks
    # repay their compile and the whole model does not
    monkeypatch.setattr(compile_rule, "native_bf16", lambda device: True)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)
    monkeypatch.setattr(compile_rule, "has_cpp_compiler", lambda: True)
    monkeypatch.setitem(compile_rule.EAGER_IMAGES_PER_S_PER_THREAD, "lenetspp",
                        0.8 / torch.get_num_threads())
    data = make_dataset(tmp_path / "data", n_train=96, n_test=32)
    cfg = Config(model="lenetspp", epochs=1, batch_size=32, data_dir=str(data), precision="bf16")
    train(cfg, tmp_path / "ruled")
    assert [c.__name__ for c in compiled] == ["NormAct"] * 6
    text = (tmp_path / "ruled" / "config.yaml").read_text()
    line = next(li for li in text.splitlines() if li.startswith("compile:"))
    assert re.match(r"compile: blocks  # chosen by the rule \(auto: saves ~\d+ s over 96 images, "
                    r"compiling its BatchNorm \+ PReLU blocks takes ~\d+ s;", line), line
    assert config_file.parse(text, "config.yaml")["compile"] == "blocks"
    key = compile_cache.graph_key(build_model("lenetspp"), 32, (1, 28, 28), CPU_BF16, blocks=True)
    assert compile_cache.holds(key)
    assert not compile_cache.holds(compile_cache.graph_key(build_model("lenetspp"), 32,
                                                           (1, 28, 28), CPU_BF16))
