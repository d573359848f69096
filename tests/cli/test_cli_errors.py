"""Every bad input gets one `error:` line naming the problem, a non-zero exit code (2 for usage
errors), no traceback, and leaves what was on disk as it was."""
from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest
import torch
import torchvision
from safetensors.torch import save as st_save
from support.cli import assert_one_line_error, fingerprint, invoke
from support.runs import cli_flags, make_data, tiny_config

from centerloss.store import checkpoint as ckpt_io
from centerloss.train.loop import train


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    """A tiny trained run (2 epochs) plus broken files made from it."""
    root = tmp_path_factory.mktemp("cli")
    data = make_data(root / "data")
    run = root / "run"
    cfg = tiny_config(data, epochs=2)
    train(cfg, run)
    good = run / "model.safetensors"
    paths = {"data": data, "run": run, "empty": root / "empty"}
    paths["empty"].mkdir()
    paths["text"] = root / "notes.safetensors"
    paths["text"].write_text("these are my notes, not weights\n")
    paths["truncated"] = root / "truncated.safetensors"
    paths["truncated"].write_bytes(good.read_bytes()[:-100])
    tensors, meta = ckpt_io.read_tensors(good)
    paths["bare"] = root / "bare.safetensors"               # the weights, no metadata at all
    paths["bare"].write_bytes(st_save(tensors))
    other = json.loads(meta["config"])
    other["model"] = "lenetspp"                             # seed weights labelled as LeNets++
    paths["arch"] = root / "arch.safetensors"
    paths["arch"].write_bytes(st_save(tensors, metadata={**meta, "config": json.dumps(other)}))
    wider = json.loads(meta["config"])
    wider["feature_dim"] = 3                                # 2-D weights labelled as 3-D
    paths["dim"] = root / "dim.safetensors"
    paths["dim"].write_bytes(st_save(tensors, metadata={**meta, "config": json.dumps(wider)}))
    paths["truncated_data"] = root / "truncated_data"
    shutil.copytree(data, paths["truncated_data"])
    images = paths["truncated_data"] / "MNIST" / "raw" / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:1000])
    paths["truncated_gz"] = root / "truncated_gz"         # Debian's layout: .gz files, no raw/
    paths["truncated_gz"].mkdir()
    for idx in (data / "MNIST" / "raw").iterdir():
        packed = gzip.compress(idx.read_bytes())
        (paths["truncated_gz"] / (idx.name + ".gz")).write_bytes(packed[:len(packed) // 2])
    paths["file"] = root / "a_file"
    paths["file"].write_text("x")
    paths["cfg"] = cfg
    return paths


# (case, arguments with {placeholders} from the world fixture, exit code, text the error must hold)
BAD_INPUTS = [
    ("lambda < 0", ["train", "--lambda", "-1"], 2, "--lambda must be in [0, 10000]"),
    ("alpha 0", ["train", "--alpha", "0"], 2, "--alpha must be in (0, 1]"),
    ("alpha > 1", ["train", "--alpha", "1.5"], 2, "--alpha must be in (0, 1]"),
    ("epochs 0", ["train", "--epochs", "0"], 2, "--epochs must be in [1, 100000]"),
    ("batch size 0", ["train", "--batch-size", "0"], 2, "--batch-size must be in [1, 65536]"),
    ("lr 0", ["train", "--lr", "0"], 2, "--lr must be in (0, 1000]"),
    ("unknown dataset", ["train", "--dataset", "cifar99"], 2, "unknown dataset 'cifar99'; choose one of"),
    ("unknown model", ["train", "--model", "vgg"], 2, "unknown model 'vgg'; choose one of"),
    ("unknown device", ["train", "--device", "tpu"], 2, "unknown device 'tpu'; choose one of"),
    ("unknown option", ["train", "--lamda", "1"], 2, "No such option: --lamda"),
    ("not a number", ["train", "--epochs", "ten"], 2, "Invalid value for '--epochs'"),
    ("unknown command", ["trian"], 2, "No such command 'trian'"),
    ("missing value", ["eval", "--epoch"], 2, "requires an argument"),
    ("missing idx files", ["train", "--data-dir", "{empty}/nodata"], 1, "the four idx files are not in"),
    ("truncated idx file", ["train", "--data-dir", "{truncated_data}", "--out", "{empty}/t"], 1,
     "train-images-idx3-ubyte: holds 984 bytes of images where its header declares 37632"),
    ("truncated .gz file", ["train", "--data-dir", "{truncated_gz}", "--out", "{empty}/g"], 1,
     "Compressed file ended before the end-of-stream marker"),
    ("checkpoint missing", ["eval", "--checkpoint", "{empty}/none.safetensors"], 1, "no such file"),
    ("checkpoint not safetensors", ["eval", "--checkpoint", "{text}"], 1, "not a valid safetensors file"),
    ("checkpoint truncated", ["eval", "--checkpoint", "{truncated}"], 1, "truncated"),
    ("checkpoint without metadata", ["eval", "--checkpoint", "{bare}"], 1, "not a cl checkpoint"),
    ("checkpoint of another architecture", ["eval", "--checkpoint", "{arch}"], 1,
     "weights do not match a lenetspp model"),
    ("checkpoint of another feature dim", ["eval", "--checkpoint", "{dim}"], 1,
     "'centers' should be a float tensor of shape (10, 3)"),
    ("epoch the run lacks", ["eval", "--run", "{run}", "--epoch", "7"], 1,
     "has no epoch 7; epochs present: 1, 2"),
    ("folder holds a run", ["train", "--out", "{run}"], 1, "already holds a run; pass --resume"),
    ("out is under a file", ["train", "--out", "{file}/run"], 1, "a_file is not a folder"),
    ("resume and overwrite", ["train", "--resume", "--overwrite", "--out", "{run}"], 2, "pass only one"),
    ("resume nothing", ["train", "--resume", "--out", "{empty}"], 1, "holds no state to resume from"),
    ("resume with another lambda", ["train", "--resume", "--out", "{run}", "--lambda", "0.5"], 2,
     "--lambda 0.5 conflicts with the run being resumed, which has --lambda 0.1"),
    ("resume shorter", ["train", "--resume", "--out", "{run}", "--epochs", "1"], 2,
     "--epochs 1 is fewer than the 2 epochs the run has begun"),
]


@pytest.mark.parametrize("case,args,code,text", BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_is_one_line_and_nonzero(world, monkeypatch, tmp_path, case, args, code, text):
    # No download may rescue (or slow down) a missing data set: torchvision finds no mirror.
    monkeypatch.setattr(torchvision.datasets.MNIST, "mirrors", [])
    monkeypatch.chdir(tmp_path)          # the default --out, params/, lands here, not in the repo
    before = fingerprint(world["run"])
    result = invoke([a.format(**world) for a in args])
    assert_one_line_error(result, code, text)
    assert fingerprint(world["run"]) == before         # nothing on disk lost or changed


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is visible")
def test_cuda_without_a_gpu(world):
    result = invoke(["train", "--device", "cuda", "--data-dir", world["data"], "--out", world["empty"] / "c"])
    assert result.exit_code == 1
    assert result.stderr.strip() == ("error: --device cuda: no CUDA GPU is visible to torch; "
                                     "use --device auto or cpu")


def test_absurd_lr_stops_with_a_clear_message(world):
    out = world["empty"] / "nan"
    result = invoke(["train", *cli_flags(tiny_config(world["data"], epochs=2)), "--lr", "1000",
                     "--out", out, "--quiet"])
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    # three returns of the guard, each said in one line, then the error that ends the run
    assert [l.split(":")[0] for l in lines] == ["guard"] * 3 + ["error"]
    assert "epoch 1: the loss diverged 4 times in a row" in lines[-1]
    assert not (out / "model.safetensors").exists()       # nothing non-finite was saved


def test_help_still_works():
    result = invoke(["train", "--help"])
    assert result.exit_code == 0
    assert "--resume" in result.stdout and "--overwrite" in result.stdout


def test_truncated_gz_leaves_no_half_file(world, tmp_path):
    result = invoke(["train", "--data-dir", world["truncated_gz"], "--out", tmp_path / "run"])
    assert result.exit_code == 1
    assert sorted(p.name for p in world["truncated_gz"].iterdir()) == [   # read in place:
        f"{name}.gz" for name in sorted(p.name for p in (world["data"] / "MNIST" / "raw").iterdir())]
    assert not (tmp_path / "run").exists()          # no empty run folder left behind either
