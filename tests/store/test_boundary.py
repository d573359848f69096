"""The file boundary against hostile input (round 3): run folders from archives whose entries are
not what their names say, paths that fail in the OS, run files that parse but contradict the run,
inputs of any length, outputs written twice. Each row: the message, the exit code, and the world
unchanged afterwards."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from support.cli import assert_one_line_error, fingerprint, invoke
from support.runs import small_run

from centerloss.store import checkpoint as ckpt_io, files
from centerloss.store.runfolder import snapshot_path
from centerloss.train.loop import train

TRAIN = ["train", "--model", "seed", "--epochs", "1", "--batch-size", "16", "--device", "cpu",
         "--precision", "fp32", "-q"]


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> dict:
    return small_run(tmp_path_factory.mktemp("boundary"))


@pytest.fixture
def world(made, tmp_path) -> dict:
    """A fresh copy of the run per test, beside a user's own file that must never change."""
    run = tmp_path / "run"
    shutil.copytree(made["run"], run, symlinks=True)
    mine = tmp_path / "mine.txt"
    mine.write_text("a user's notes\n")
    return {"data": made["data"], "run": run, "root": tmp_path, "mine": mine}


def link_history(w):
    (w["run"] / "history.jsonl").unlink()
    (w["run"] / "history.jsonl").symlink_to(w["mine"])


def folder_as_checkpoint(w):
    path = w["run"] / "epochs" / "epoch_002.safetensors"
    path.unlink()
    path.mkdir()
    (path / "inside.txt").write_text("not ours")


def link_epochs(w):
    shutil.rmtree(w["run"] / "epochs")
    (w["run"] / "epochs").symlink_to(w["root"])


def history_line(text):
    def spoil(w):
        path = w["run"] / "history.jsonl"
        lines = path.read_text().splitlines()
        lines[1] = text
        path.write_text("\n".join(lines) + "\n")
    return spoil


def foreign_snapshot(w):
    """Epoch 1's snapshot replaced by one from a run of other classes: valid, but not this run's."""
    path = snapshot_path(w["run"], 1)
    tensors, meta = ckpt_io.read_tensors(path)
    meta = {**meta, "classes": json.dumps([f"c{i}" for i in range(10)])}
    ckpt_io.save_tensors(path, tensors, meta)


def nan_snapshot(w):
    path = snapshot_path(w["run"], 1)
    tensors, meta = ckpt_io.read_tensors(path)
    tensors["test_features"][0, 0] = float("nan")
    ckpt_io.save_tensors(path, tensors, meta)


def labels_out_of_range(w):
    path = snapshot_path(w["run"], 2)
    tensors, meta = ckpt_io.read_tensors(path)
    tensors["test_labels"][0] = 99
    ckpt_io.save_tensors(path, tensors, meta)


def nothing(w):
    pass


def data_loop(w):
    (w["root"] / "loop").symlink_to(w["root"] / "loop")


RESUME = ["train", "--resume", "--out", "{run}", "--epochs", "3", "-q"]
OVERWRITE = [*TRAIN, "--data-dir", "{data}", "--out", "{run}", "--overwrite"]
CURVES = ["plot", "--curves", "--run", "{run}"]

# (case, what is done to the world, arguments, exit code, text the one error line must hold)
CASES = [
    ("history a link, --overwrite", link_history, OVERWRITE, 1, "history.jsonl is a symbolic link"),
    ("history a link, --resume", link_history, RESUME, 1, "history.jsonl is a symbolic link"),
    ("history a link, curves", link_history, CURVES, 1, "history.jsonl is a symbolic link"),
    ("a folder as a checkpoint, --overwrite", folder_as_checkpoint, OVERWRITE, 1,
     "epoch_002.safetensors should be a file but is a folder"),
    ("a folder as a checkpoint, eval", folder_as_checkpoint, ["eval", "--run", "{run}", "--epoch", "2"],
     1, "epoch_002.safetensors should be a file but is a folder"),
    ("epochs/ a link out of the run", link_epochs, OVERWRITE, 1, "epochs is a symbolic link"),
    ("history line {}", history_line("{}"), CURVES, 1, "line 2 is not the record of epoch 2"),
    ("history line 7", history_line("7"), CURVES, 1, "line 2 is not the record of epoch 2"),
    ("history line NaN", history_line('{"epoch": 2, "test_accuracy": NaN}'), CURVES, 1,
     "line 2 holds a value that is not a finite number (test_accuracy)"),
    ("history not JSON", history_line("{'epoch': 2"), CURVES, 1, "line 2 is not JSON"),
    ("a snapshot of another run", foreign_snapshot, ["plot", "--gif", "--run", "{run}"], 1,
     "epoch_001.safetensors does not belong to this run"),
    ("a snapshot with NaN", nan_snapshot, ["plot", "--run", "{run}", "--epoch", "1"], 1,
     "test_features holds NaN or infinite values"),
    ("snapshot labels past the classes", labels_out_of_range, ["plot", "--run", "{run}"], 1,
     "test_labels lie outside the 10 classes"),
    # OS errors from paths a user typed: one line naming the path
    ("--out under a file", nothing, [*TRAIN, "--data-dir", "{data}", "--out", "{mine}/run"], 1,
     "mine.txt is not a folder"),
    ("--data-dir a link loop", data_loop, [*TRAIN, "--data-dir", "{root}/loop", "--out", "{root}/r"], 1,
     "loop"),
    ("embed -o under a file", nothing, ["embed", "--run", "{run}", "-o", "{mine}/e.csv"], 1,
     "mine.txt is a file, not a folder"),
    ("export -o a folder", nothing, ["export", "--run", "{run}", "-o", "{root}"], 1,
     "name the output *.onnx"),
    ("export -o a folder named .onnx", lambda w: (w["root"] / "m.onnx").mkdir(),
     ["export", "--run", "{run}", "-o", "{root}/m.onnx"], 1, "m.onnx is a folder; name a file"),
    ("plot -o under a file", nothing, ["plot", "--run", "{run}", "-o", "{mine}/p.png"], 1,
     "mine.txt is a file, not a folder"),
    ("--pairs a folder", nothing, ["eval", "--run", "{run}", "--pairs", "{root}"], 1,
     "cannot read the pairs file (is a folder, not a file)"),
]


@pytest.mark.parametrize("case,spoil,args,code,text", CASES, ids=[c[0] for c in CASES])
def test_each_class_fails_in_one_line_and_changes_nothing(world, monkeypatch, case, spoil, args, code,
                                                          text):
    monkeypatch.chdir(world["root"])
    spoil(world)
    before = fingerprint(world["root"])
    links = sorted(str(p) for p in world["root"].rglob("*") if p.is_symlink())
    result = invoke([a.format(**world) for a in args])
    assert_one_line_error(result, code, text)
    assert fingerprint(world["root"]) == before      # nothing written, replaced or removed
    assert sorted(str(p) for p in world["root"].rglob("*") if p.is_symlink()) == links
    assert world["mine"].read_text() == "a user's notes\n"


def test_a_second_writer_of_one_output_is_told(world):
    out = world["root"] / "e.csv"
    assert invoke(["embed", "--run", world["run"], "-o", out]).exit_code == 0
    first = out.read_bytes()
    result = invoke(["embed", "--run", world["run"], "--split", "train", "-o", out])
    assert_one_line_error(result, 1, "e.csv already exists; pass --overwrite")
    assert out.read_bytes() == first


def test_exclusive_write_loses_no_result(tmp_path):
    path = tmp_path / "out.bin"
    files.atomic_write(path, b"first", exclusive=True)
    with pytest.raises(files.PathError, match="already exists"):
        files.atomic_write(path, b"second", exclusive=True)
    assert path.read_bytes() == b"first"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]      # no temporary file left


def test_a_killed_writers_temporary_file_is_removed_by_the_next_write(tmp_path):
    dead = tmp_path / ".out.csv.999999999.abcd.tmp"        # no process has this id
    alive = tmp_path / f".out.csv.{os.getppid()}.abcd.tmp"  # a live process's write in progress
    other = tmp_path / ".notes.txt.999999999.abcd.tmp"      # another file's: not ours to judge
    for p in (dead, alive, other):
        p.write_bytes(b"partial")
    files.atomic_write(tmp_path / "out.csv", b"whole")
    assert not dead.exists() and alive.exists() and other.exists()


def test_reading_is_bounded_whatever_the_file_declares(tmp_path):
    big = tmp_path / "big.txt"
    with open(big, "wb") as f:
        f.truncate(1 << 30)                                 # 1 GiB, sparse: nothing allocated
    with pytest.raises(files.PathError, match="more than the 1,024 cl reads"):
        files.read_bytes(big, 1024)
    long_line = tmp_path / "line.txt"
    long_line.write_bytes(b"a b 1\n" + b"x" * 5000 + b"\n")
    lines = files.read_lines(long_line, 1000, "pairs file")
    assert next(lines) == b"a b 1"
    with pytest.raises(files.PathError, match="line 2 of the pairs file is longer than 1,000 bytes"):
        next(lines)


def test_class_names_are_printed_as_they_are(tmp_path, monkeypatch):
    """A class folder named like rich markup or an emoji code prints as its name."""
    monkeypatch.chdir(tmp_path)
    names = ["[bold]cat", "[red]dog", ":smile:"]
    for k, name in enumerate(names):
        (tmp_path / "images" / name).mkdir(parents=True)
        for i in range(6):
            pixels = np.full((8, 8), 40 * k + 5 * i, np.uint8)
            Image.fromarray(pixels).save(tmp_path / "images" / name / f"{i}.png")
    run = tmp_path / "run"
    result = invoke([*TRAIN, "--dataset", "folder", "--data-dir", tmp_path / "images", "--out", run,
                     "--batch-size", "4", "--workers", "0"])
    assert result.exit_code == 0, result.output
    result = invoke(["eval", "--run", run, "--device", "cpu"])
    assert result.exit_code == 0, result.output
    for name in names:
        assert name in result.stdout
    assert "😄" not in result.stdout



def test_a_failed_download_leaves_no_empty_folders(tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    from centerloss.data.idx import find_files
    from centerloss.errors import DataError

    class Offline:
        def __init__(self, root, train, download):
            (Path(root) / "MNIST" / "raw").mkdir(parents=True, exist_ok=True)   # as torchvision does
            raise RuntimeError("Error downloading train-images-idx3-ubyte.gz")

    monkeypatch.setattr(tvd, "MNIST", Offline)
    (tmp_path / "kept").mkdir()
    with pytest.raises(DataError, match="downloading them failed"):
        find_files("mnist", tmp_path / "kept" / "data")
    assert [p.name for p in tmp_path.rglob("*")] == ["kept"]     # the user's own folder stays


def test_a_start_on_a_full_disk_leaves_no_lock(tmp_path, monkeypatch):
    import errno as errno_mod

    from centerloss.errors import TrainError
    from centerloss.store import runfolder

    def full(fd, data):
        raise OSError(errno_mod.ENOSPC, os.strerror(errno_mod.ENOSPC))

    monkeypatch.setattr(runfolder.os, "write", full)
    with pytest.raises(TrainError, match="No space left"):
        with runfolder.run_lock(tmp_path / "run"):
            pass
    assert not (tmp_path / "run").exists()


def test_a_stdout_that_cannot_encode_a_class_name_gets_escapes(tmp_path):
    """An ASCII locale without Python's UTF-8 mode: names are escaped, never a traceback."""
    import subprocess
    import sys

    from centerloss.config import Config
    for k, name in enumerate(["Ωmega", "café"]):
        (tmp_path / "images" / name).mkdir(parents=True)
        for i in range(6):
            Image.fromarray(np.full((8, 8), 100 * k + 9 * i, np.uint8)).save(
                tmp_path / "images" / name / f"{i}.png")
    cfg = Config(model="seed", dataset="folder", data_dir=str(tmp_path / "images"), epochs=1,
                 batch_size=4, device="cpu", precision="fp32", workers=0)
    train(cfg, tmp_path / "run")
    env = {**os.environ, "PYTHONIOENCODING": "ascii", "PYTHONUTF8": "0", "LC_ALL": "C",
           "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    result = subprocess.run([sys.executable, "-m", "cli", "eval", "--run", str(tmp_path / "run"),
                             "--device", "cpu"], capture_output=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr.decode()
    assert b"Traceback" not in result.stderr
    assert b"\\u03a9mega" in result.stdout and b"caf\\xe9" in result.stdout
