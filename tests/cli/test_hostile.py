"""Classes of failure a hostile (but fair) user finds: each row is one class, with its message,
its exit code, and the run folder checked unchanged afterwards."""
from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save as st_save
from support.cli import assert_one_line_error, fingerprint, invoke
from support.data import make_dataset, write_idx_images, write_idx_labels
from support.runs import cli_flags, small_run, tiny_config

from centerloss.data.folder import decode
from centerloss.store import checkpoint as ckpt_io, files as store_files, runfolder
from centerloss.store.runfolder import epoch_name

REPO = Path(__file__).resolve().parents[2]


def idx_set(root: Path, train_shape: tuple[int, int, int], test_shape: tuple[int, int, int],
            magic_ok: bool = True) -> Path:
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix, (n, h, w) in (("train", train_shape), ("t10k", test_shape)):
        write_idx_images(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 255, (n, h, w)))
        write_idx_labels(raw / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10)
    if not magic_ok:
        path = raw / "train-images-idx3-ubyte"
        path.write_bytes(b"PK\x03\x04" + path.read_bytes()[4:])
    return root


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("hostile")
    w = small_run(root)
    data = w["data"]
    w.update(root=root, flags=" ".join(cli_flags(tiny_config(data))))
    w["mixed"] = idx_set(root / "mixed", (48, 28, 28), (32, 32, 32))
    w["oblong"] = idx_set(root / "oblong", (48, 28, 20), (32, 28, 20))
    w["tiny"] = idx_set(root / "tiny", (48, 4, 4), (32, 4, 4))
    w["one"] = idx_set(root / "one", (1, 28, 28), (32, 28, 28))
    w["magic"] = idx_set(root / "magic", (48, 28, 28), (32, 28, 28), magic_ok=False)
    w["other"] = make_dataset(root / "other", n_train=48, n_test=32, seed=7)
    folder = root / "images"
    for name in ("a", "b"):
        (folder / name).mkdir(parents=True)
        for i in range(4):
            Image.fromarray(np.full((8, 8), 60 * i, np.uint8)).save(folder / name / f"{i}.png")
    w["images"] = folder
    tensors, meta = ckpt_io.read_tensors(w["run"] / "model.safetensors")
    nan = dict(tensors)
    nan["centers"] = torch.full_like(tensors["centers"], float("nan"))
    w["nan"] = root / "nan.safetensors"
    w["nan"].write_bytes(st_save(nan, metadata=meta))
    config = json.loads(meta["config"])
    config["data_dir"] = str(root / "stranger" / "data")        # a path on someone else's disk
    w["stranger"] = root / "stranger.safetensors"
    w["stranger"].write_bytes(st_save(tensors, metadata={**meta, "config": json.dumps(config)}))
    w["latin1"] = root / "latin1.txt"
    w["latin1"].write_bytes("a.png b.png 1\nJos\xe9.png b.png 0\n".encode("latin-1"))
    w["super"] = root / "super.txt"
    w["super"].write_text("1 1\nAlice 1 \u00b2\n", encoding="utf-8")
    return w


TRAIN = ["train", "--model", "seed", "--epochs", "1", "--batch-size", "16", "--device", "cpu",
         "--precision", "fp32"]
OVER = ["--out", "{run}", "--overwrite"]     # each of these must leave the old run as it was

# (case, arguments, exit code, text the one error line must hold)
CLASSES = [
    # shapes are checked against the model before --overwrite erases anything
    ("test images of another size", [*TRAIN, "--data-dir", "{mixed}", *OVER], 1,
     "train images are 1x28x28 (CxHxW) but test images are 1x32x32"),
    ("non-square images", [*TRAIN, "--data-dir", "{oblong}", *OVER], 1,
     "images are 28x20; cl's models take square images"),
    ("images too small for the model", [*TRAIN, "--model", "lenetspp", "--data-dir", "{tiny}", *OVER],
     1, "--model lenetspp cannot take 4x4 images"),
    ("one training image", [*TRAIN, "--data-dir", "{one}", *OVER], 1,
     "the train split has 1 image, too few for one batch"),
    ("shift past a quarter of the image", [*TRAIN, "--data-dir", "{data}", "--augment", "20", *OVER], 1,
     "--augment 20 would shift 28x28 images by more than a quarter"),
    ("wrong idx magic", [*TRAIN, "--data-dir", "{magic}", *OVER], 1,
     "train-images-idx3-ubyte: not an idx file of uint8 images (its first bytes are 504b0304"),
    # every number that decides an allocation is bounded, every float finite
    ("image size", [*TRAIN, "--image-size", "100000", *OVER], 2, "--image-size must be in [0, 1024]"),
    ("augment", [*TRAIN, "--augment", "100000", *OVER], 2, "--augment must be in [0, 64]"),
    ("seed", [*TRAIN, "--seed", "100000000000000000000", *OVER], 2, "--seed must be in [0, 4294967295]"),
    ("batch size", [*TRAIN, "--batch-size", "10000000", *OVER], 2, "--batch-size must be in [1, 65536]"),
    ("lambda inf", [*TRAIN, "--lambda", "inf", *OVER], 2, "--lambda must be a finite number, got inf"),
    ("lr inf", [*TRAIN, "--lr", "inf", *OVER], 2, "--lr must be a finite number, got inf"),
    ("lr nan", [*TRAIN, "--lr", "nan", *OVER], 2, "--lr must be a finite number, got nan"),
    ("num pairs", ["eval", "--run", "{run}", "--verify", "--num-pairs", "10000000000"], 2,
     "--num-pairs must be in [2, 1000000]"),
    ("folds", ["eval", "--run", "{run}", "--verify", "--folds", "1000"], 2, "--folds must be in [2, 100]"),
    ("more folds than pairs", ["eval", "--run", "{run}", "--verify", "--num-pairs", "10", "--folds", "50",
                               "--device", "cpu"], 1, "every fold needs both"),
    ("fps", ["plot", "--run", "{run}", "--gif", "--fps", "inf"], 2, "--fps must be a finite number"),
    ("embed batch", ["embed", "--run", "{run}", "-o", "{root}/e.csv", "--batch-size", "0"], 2,
     "--batch-size must be in [1, 65536]"),
    # usage errors exit 2
    ("unknown split", ["embed", "--run", "{run}", "--split", "validation", "-o", "{root}/e.csv"], 2,
     "--split must be train or test, got 'validation'"),
    ("empty --out", [*TRAIN, "--out", ""], 2, "an empty argument after --out"),
    ("folder without --data-dir", [*TRAIN, "--dataset", "folder"], 2,
     "--dataset folder needs --data-dir"),
    # the run folder and the data set do not mix
    ("out inside an image-folder data set", [*TRAIN, "--dataset", "folder", "--data-dir", "{images}",
                                             "--out", "{images}/run"], 1,
     "lies inside the data set folder"),
    ("resume on other data", ["train", "--resume", "--out", "{run}", "--epochs", "3",
                              "--data-dir", "{other}"], 1,
     "--resume: the mnist data found now differs from the data"),
    # a checkpoint is data: NaN weights and its paths decide nothing
    ("NaN centers, eval", ["eval", "--checkpoint", "{nan}", "--device", "cpu"], 1,
     "centers holds NaN or infinite values"),
    ("NaN centers, embed", ["embed", "--checkpoint", "{nan}", "-o", "{root}/n.csv"], 1,
     "centers holds NaN or infinite values"),
    ("a stranger's data folder", ["eval", "--checkpoint", "{stranger}", "--device", "cpu"], 1,
     "stranger/data, which is not here; pass --data-dir"),
    # pairs files name the file and the line
    ("pairs file not UTF-8", ["eval", "--checkpoint", "{run}/model.safetensors", "--pairs", "{latin1}"],
     1, "latin1.txt:2: not UTF-8 text (byte 0xe9 at column 4)"),
    ("pairs with a digit int() refuses", ["eval", "--checkpoint", "{run}/model.safetensors",
                                          "--pairs", "{super}"], 1, "super.txt:2: expected"),
    ("no such run folder", ["eval", "--run", "{root}/nowhere"], 1,
     "nowhere: no such run folder; pass --run"),
    ("eval on test images of another size", ["eval", "--run", "{run}", "--data-dir", "{mixed}",
                                             "--device", "cpu"], 1,
     "takes [1, 28, 28] inputs, the data set's test split gives [1, 32, 32]"),
    ("embed --auto-invert and --invert", ["embed", "--run", "{run}", "--images", "{images}",
                                          "--invert", "--auto-invert", "-o", "{root}/i.csv"], 2,
     "pass one"),
]


@pytest.mark.parametrize("case,args,code,text", CLASSES, ids=[c[0] for c in CLASSES])
def test_each_class_fails_in_one_line_and_changes_nothing(world, monkeypatch, tmp_path, case, args,
                                                          code, text):
    monkeypatch.chdir(tmp_path)
    before = fingerprint(world["root"])
    result = invoke([a.format(**world) for a in args])
    assert_one_line_error(result, code, text)
    assert fingerprint(world["root"]) == before        # run, data and inputs all as they were
    assert not (world["root"] / "stranger").exists()   # nothing made where a checkpoint pointed


def test_a_second_train_on_a_locked_folder_is_refused(world, tmp_path):
    out = tmp_path / "busy"
    with runfolder.run_lock(out):                      # as a first `cl train` holds it
        result = invoke([*TRAIN, "--data-dir", world["data"], "--out", out])
        assert result.exit_code == 1
        assert "is in use by another cl train" in result.stderr
        assert sorted(p.name for p in out.iterdir()) == [".lock"]   # it wrote nothing
    assert not out.exists()                            # the lock leaves no empty folder behind
    result = invoke([*TRAIN, "--data-dir", world["data"], "--out", out, "-q"])
    assert result.exit_code == 0 and not (out / ".lock").exists()


def test_a_full_disk_names_the_file_and_how_to_resume(world, tmp_path, monkeypatch):
    real = store_files._atomic_write

    def full_at_epoch_2(path, data, exclusive=False):
        if path.name == "epoch_002.safetensors":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(path, data, exclusive)

    monkeypatch.setattr(store_files, "_atomic_write", full_at_epoch_2)
    out = tmp_path / "run"
    result = invoke([*TRAIN, "--epochs", "2", "--data-dir", world["data"], "--out", out, "-q"])
    assert result.exit_code == 1
    line = result.stderr.strip()
    assert line.startswith("error: cannot write ") and "epoch_002.safetensors (No space left" in line
    assert f"holds 1 finished epoch; resume with: cl train --resume --out {out}" in line
    monkeypatch.setattr(store_files, "_atomic_write", real)
    assert invoke(["train", "--resume", "--out", out, "-q"]).exit_code == 0


def cl(*args: str, **kw) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "cli", *args], env=env, text=True, timeout=120, **kw)


def test_stdout_closed_or_full_is_one_line(world):
    closed = subprocess.run(f"{sys.executable} -m cli eval --run {world['run']} --device cpu >&-",
                            shell=True, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert closed.returncode == 1
    assert closed.stderr.strip().splitlines() == [
        "error: stdout is closed; give cl somewhere to write (> FILE, or > /dev/null to discard "
        "the output)"]
    if Path("/dev/full").exists():
        with open("/dev/full", "w") as full:
            result = cl("eval", "--run", str(world["run"]), "--device", "cpu", stdout=full,
                        stderr=subprocess.PIPE)
        assert result.returncode == 1
        assert result.stderr.strip() == "error: cannot write to stdout (No space left on device)"


def test_train_json_into_head_keeps_the_run_resumable(world, tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "cli", *TRAIN, "--epochs", "3", "--json",
                             "--data-dir", str(world["data"]), "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    first = json.loads(proc.stdout.readline())
    proc.stdout.close()                                # what `| head -1` does after one line
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 1
    assert first["epoch"] == 1 and first["test_accuracy"] == round(first["test_accuracy"], 6)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "broken pipe" in lines[0] and "resume with: cl train --resume" in lines[0]
    result = invoke(["train", "--resume", "--out", out, "-q"])
    assert result.exit_code == 0 and len(ckpt_io.read_history(out)) == 3


def test_sixteen_bit_images_are_scaled_not_clipped(tmp_path):
    ramp = (np.arange(16 * 16).reshape(16, 16) * 257).astype(np.uint16)     # 0 .. 65535
    Image.fromarray(ramp).save(tmp_path / "g16.png")
    pixels = decode(tmp_path / "g16.png", 16, 1)
    assert pixels.min() == 0 and pixels.max() == 255
    assert abs(float(pixels.mean()) - 127.5) < 1                             # not black and white


def test_train_snapshot_is_the_final_model_on_fixed_images(world):
    from centerloss.data.registry import dataset_for
    from centerloss.data.sample import sample_split
    from centerloss.device.runtime import Runtime
    from centerloss.evaluation.inference import infer, load_model
    run = world["run"]
    for epoch in (1, 2):
        tensors, _ = ckpt_io.read_tensors(run / "features" / epoch_name(epoch))
        runtime = Runtime.resolve("cpu", "fp32")
        ckpt, model = load_model(run / "epochs" / epoch_name(epoch), runtime)
        dev = runtime.device
        ds = dataset_for(ckpt.config, dev)
        sample = sample_split(ds.train, 20)
        features, _ = infer(model, sample, ds.mean, ds.std, runtime)
        assert torch.allclose(tensors["train_features"], features, atol=1e-5)
        assert torch.equal(tensors["train_labels"], sample.labels)


def test_data_folders_are_only_read(world, tmp_path):
    flat = tmp_path / "flat"                     # Debian's layout: the idx files, no MNIST/raw
    flat.mkdir()
    for f in (world["data"] / "MNIST" / "raw").iterdir():
        (flat / f.name).write_bytes(f.read_bytes())
    before = fingerprint(flat)
    result = invoke([*TRAIN, "--data-dir", flat, "--out", tmp_path / "run", "-q"])
    assert result.exit_code == 0, result.output
    assert fingerprint(flat) == before and sorted(p.name for p in flat.iterdir()) == sorted(before)


def test_auto_invert_inverts_only_light_backgrounds(world, tmp_path):
    square = np.zeros((28, 28), np.uint8)
    square[10:18, 10:18] = 255
    Image.fromarray(square).save(tmp_path / "dark.png")           # MNIST-like: left alone
    Image.fromarray(255 - square).save(tmp_path / "light.png")    # a drawing on paper: inverted
    out = tmp_path / "e.safetensors"
    result = invoke(["embed", "--run", world["run"], "--images", tmp_path / "dark.png",
                     tmp_path / "light.png", "--auto-invert", "-o", out])
    assert result.exit_code == 0, result.output
    assert "inverted 1 of 2 images" in result.stdout
    tensors, meta = ckpt_io.read_tensors(out)
    assert json.loads(meta["inverted"]) == [False, True]
    assert torch.equal(tensors["features"][0], tensors["features"][1])   # the same image after all


def test_ctrl_c_while_the_data_loads_says_nothing_was_written(world, tmp_path, monkeypatch):
    import centerloss.train.loop as train_mod

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_mod, "dataset_for", interrupted)
    out = tmp_path / "run"
    result = invoke([*TRAIN, "--data-dir", world["data"], "--out", out])
    assert result.exit_code == 130
    assert result.stderr.strip() == f"error: interrupted; nothing was written to {out}"
    assert not out.exists()
    before = fingerprint(world["run"])                   # a run that exists keeps its resume hint
    result = invoke(["train", "--resume", "--out", world["run"], "--epochs", "3"])
    assert result.exit_code == 130
    assert "holds 2 finished epochs; resume with: cl train --resume --out" in result.stderr
    assert fingerprint(world["run"]) == before


def test_names_that_are_not_utf8_are_escaped_not_fatal(tmp_path):
    root = os.fsencode(tmp_path / "images")
    for cls in (b"caf\xe9", "ünï".encode()):
        folder = os.path.join(root, cls)
        os.makedirs(folder)
        for i in range(4):
            Image.fromarray(np.full((8, 8), 40 * i + (100 if cls[0] == 99 else 0), np.uint8)).save(
                os.path.join(folder, b"im\xff%d.png" % i))
    out = tmp_path / "run"
    result = invoke([*TRAIN, "--dataset", "folder", "--data-dir", os.fsdecode(root),
                     "--image-size", "8", "--augment", "0", "--out", out, "-q"])
    assert result.exit_code == 0, result.output
    assert ckpt_io.load_checkpoint(out / "model.safetensors").classes == ["caf\\xe9", "ünï"]
    result = invoke(["embed", "--run", out, "--images", os.fsdecode(root), "-o", tmp_path / "e.csv"])
    assert result.exit_code == 0, result.output
    assert "caf\\xe9/im\\xff0.png" in (tmp_path / "e.csv").read_text(encoding="utf-8")
    missing = os.fsdecode(os.path.join(root, b"caf\xe9", b"gone\xff.png"))
    result = invoke(["embed", "--run", out, "--images", missing, "-o", tmp_path / "f.csv"])
    assert result.exit_code == 1
    assert result.stderr.strip().endswith("caf\\xe9/gone\\xff.png: no such file or folder")


def test_an_image_past_pillows_pixel_limit_is_one_error_line(world, tmp_path, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)     # 12x12 is past it, as a bomb would be
    Image.fromarray(np.zeros((12, 12), np.uint8)).save(tmp_path / "big.png")
    result = invoke(["embed", "--run", world["run"], "--images", tmp_path / "big.png",
                     "-o", tmp_path / "e.csv"])
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "big.png: not an image that can be read (Image size (144 pixels)" in lines[0]


def test_a_pairs_file_with_a_byte_order_mark_is_read(world, tmp_path):
    lines = ["a/0.png\tb/0.png\t0", "a/1.png\ta/2.png\t1", "b/1.png\tb/2.png\t1", "a/3.png\tb/3.png\t0"]
    pairs = world["images"] / "bom.txt"        # Notepad's UTF-8: a BOM before the first path
    pairs.write_bytes("\ufeff".encode() + "\n".join(lines).encode() + b"\n")
    try:
        result = invoke(["eval", "--checkpoint", world["run"] / "model.safetensors", "--pairs", pairs,
                         "--folds", "2", "--device", "cpu", "--json"])
    finally:
        pairs.unlink()
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["verification"]["pairs"] == 4
