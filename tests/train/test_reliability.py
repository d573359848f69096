"""Nothing is lost: Ctrl-C saves a resumable state, kill -9 leaves every completed epoch loadable,
a NaN stops before anything bad is saved, and a resumed run ends bit-identical to one that never
stopped (CPU, fp32)."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from support.runs import cli_flags, make_data, same_tensors, tiny_config, without_timings
from typer.testing import CliRunner

from centerloss.config.config import Config
from centerloss.errors import CheckpointError, DataError, Interrupted, TrainError
from centerloss.model.build import build_from_checkpoint
from centerloss.store import checkpoint as ckpt_io, runfolder
from centerloss.store.files import atomic_write
from centerloss.store.runfolder import available_epochs, epoch_name
from centerloss.train import resume as resume_mod
from centerloss.train.loop import Callbacks, train
from cli.main import app

REPO = Path(__file__).resolve().parents[2]
SUBPROCESS_TIMEOUT_S = 300    # generous: importing torch alone can take 20 s on a loaded runner


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return make_data(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory) -> Path:
    """The uninterrupted 3-epoch run every interrupted one must match."""
    out = tmp_path_factory.mktemp("reference")
    train(tiny_config(data), out)
    return out


def assert_same_run(a: Path, b: Path) -> None:
    """Same final weights, centers, optimizer state, snapshots and history, bit for bit."""
    assert same_tensors(a / "model.safetensors", b / "model.safetensors")
    assert same_tensors(a / "resume.safetensors", b / "resume.safetensors")
    for epoch in available_epochs(a):
        name = epoch_name(epoch)
        assert same_tensors(a / "epochs" / name, b / "epochs" / name)
        assert same_tensors(a / "features" / name, b / "features" / name)
    assert available_epochs(a) == available_epochs(b)
    assert without_timings(ckpt_io.read_history(a)) == without_timings(ckpt_io.read_history(b))


class SignalAt(Callbacks):
    """Sends this process a real signal after a given batch, as Ctrl-C would."""

    def __init__(self, epoch: int, batch: int, signum: int = signal.SIGINT):
        self.at, self.signum = (epoch, batch), signum

    def on_batch(self, epoch, batch, batches, images, window) -> None:
        if (epoch, batch) == self.at:
            signal.raise_signal(self.signum)


def test_same_seed_is_bit_identical_and_another_seed_is_not(data, reference, tmp_path):
    train(tiny_config(data), tmp_path / "again")
    assert_same_run(reference, tmp_path / "again")
    train(tiny_config(data, seed=1, epochs=1), tmp_path / "other")
    assert not same_tensors(reference / "epochs" / "epoch_001.safetensors",
                            tmp_path / "other" / "epochs" / "epoch_001.safetensors")


@pytest.mark.parametrize("epoch,batch", [(2, 1), (2, 3)], ids=["mid-epoch", "last batch"])
def test_sigint_mid_epoch_then_resume_equals_uninterrupted(data, reference, tmp_path, epoch, batch):
    out = tmp_path / "run"
    cfg = tiny_config(data)
    handler = signal.getsignal(signal.SIGINT)
    with pytest.raises(Interrupted) as info:
        train(cfg, out, SignalAt(epoch, batch))
    stopped = info.value
    assert signal.getsignal(signal.SIGINT) is handler        # the old handler is given back
    # A signal during the last batch lets the epoch finish: the state is then that of its end.
    expect = (epoch, batch) if batch < 3 else (epoch + 1, 0)
    assert (stopped.epoch, stopped.batch) == expect
    assert stopped.saved == out / "resume.safetensors"
    assert resume_mod.peek(out)[1:] == expect
    assert len(ckpt_io.read_history(out)) == expect[0] - 1
    history = train(cfg, out, resume=True)
    assert [r["epoch"] for r in history] == [1, 2, 3]
    assert_same_run(reference, out)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_sigterm_and_sighup_are_handled_like_ctrl_c(data, tmp_path, signum):
    """SIGHUP is what a dropped SSH session sends: the partial epoch is saved, the lock released."""
    name = signal.Signals(signum).name
    with pytest.raises(Interrupted, match=f"{name} stopped training in epoch 1, after batch 2 of 3"):
        train(tiny_config(data, epochs=1), tmp_path / "run", SignalAt(1, 2, signum))
    assert (tmp_path / "run" / "resume.safetensors").is_file()
    assert not (tmp_path / "run" / ".lock").exists()


def test_resume_after_resume_and_extending_the_run(data, reference, tmp_path):
    out = tmp_path / "run"
    cfg = tiny_config(data)
    with pytest.raises(Interrupted):
        train(cfg, out, SignalAt(1, 2))
    with pytest.raises(Interrupted):
        train(cfg, out, SignalAt(2, 2), resume=True)
    train(cfg, out, resume=True)
    assert_same_run(reference, out)
    saved, epoch, batch = resume_mod.peek(out)
    longer = resume_mod.resume_config(saved, {"epochs": 4}, epoch, batch)
    history = train(longer, out, resume=True)
    assert [r["epoch"] for r in history] == [1, 2, 3, 4]
    assert ckpt_io.load_checkpoint(out / "model.safetensors").epoch == 4


def test_nan_stops_and_keeps_the_last_good_epoch(data, tmp_path, monkeypatch):
    out = tmp_path / "run"
    real = F.cross_entropy

    class PoisonAfterEpoch1(Callbacks):
        poisoned = False

        def on_epoch_end(self, record) -> None:
            PoisonAfterEpoch1.poisoned = True

    def cross_entropy(logits, target, *args, **kwargs):
        loss = real(logits, target, *args, **kwargs)
        return loss * float("nan") if PoisonAfterEpoch1.poisoned else loss

    monkeypatch.setattr(F, "cross_entropy", cross_entropy)
    with pytest.raises(TrainError, match="epoch 2: the loss diverged 4 times in a row .* Epochs before 2 are saved"):
        train(tiny_config(data), out, PoisonAfterEpoch1())
    assert available_epochs(out) == [1]
    assert available_epochs(out, "features") == [1]
    assert [r["epoch"] for r in ckpt_io.read_history(out)] == [1]
    ckpt = ckpt_io.load_checkpoint(out / "model.safetensors")
    assert ckpt.epoch == 1 and torch.isfinite(ckpt.centers).all()
    assert all(torch.isfinite(v).all() for v in ckpt.model_state.values() if v.is_floating_point())
    assert resume_mod.peek(out)[1:] == (2, 0)       # the state to resume from is epoch 1's end


def test_overwrite_removes_the_old_run_and_nothing_else(data, tmp_path):
    out = tmp_path / "run"
    cfg = tiny_config(data)
    train(cfg, out)
    (out / "plots").mkdir()
    (out / "plots" / "epoch_003.png").write_bytes(b"png")
    (out / "notes.txt").write_text("mine")
    (out / "epochs" / "my_epoch_999.safetensors").write_bytes(b"not ours")
    (out / "epochs" / ".epoch_003.safetensors.x1y2.tmp").write_bytes(b"half a write")
    with pytest.raises(TrainError, match="already holds a run"):
        train(tiny_config(data, epochs=1), out)
    train(tiny_config(data, epochs=1), out, overwrite=True)
    assert available_epochs(out) == [1]
    assert available_epochs(out, "features") == [1]
    assert len(ckpt_io.read_history(out)) == 1
    assert sorted(p.name for p in (out / "epochs").iterdir()) == ["epoch_001.safetensors",
                                                                  "my_epoch_999.safetensors"]
    assert (out / "plots" / "epoch_003.png").read_bytes() == b"png"
    assert (out / "notes.txt").read_text() == "mine"
    assert ckpt_io.load_checkpoint(out / "model.safetensors").config.epochs == 1


def test_bad_data_with_overwrite_keeps_the_old_run(data, tmp_path):
    out = tmp_path / "run"
    train(tiny_config(data, epochs=1), out)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    broken = tmp_path / "broken"
    shutil.copytree(data, broken)
    images = broken / "MNIST" / "raw" / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:100])
    with pytest.raises(DataError, match="truncated or damaged"):
        train(tiny_config(broken, epochs=1), out, overwrite=True)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_atomic_write_keeps_the_old_file_when_the_write_fails(tmp_path, monkeypatch):
    path = tmp_path / "model.safetensors"
    atomic_write(path, b"old")

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        atomic_write(path, b"new")
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]   # no temp left


def test_resume_config_keeps_the_run_meaning():
    saved = Config(lam=0.1, epochs=4, model="seed")
    cfg = resume_mod.resume_config(saved, {"lam": 0.1, "epochs": 6, "device": "cpu"}, 3, 1)
    assert (cfg.lam, cfg.epochs, cfg.device, cfg.model) == (0.1, 6, "cpu", "seed")
    with pytest.raises(ValueError, match="--model lenetspp conflicts .* has --model seed"):
        resume_mod.resume_config(saved, {"model": "lenetspp"}, 3, 1)
    with pytest.raises(ValueError, match="--batch-size 64 conflicts"):
        resume_mod.resume_config(saved, {"batch_size": 64}, 3, 1)
    with pytest.raises(ValueError, match="--epochs 2 is fewer than the 3 epochs the run has begun"):
        resume_mod.resume_config(saved, {"epochs": 2}, 3, 1)
    assert resume_mod.resume_config(saved, {"epochs": 2}, 3, 0).epochs == 2   # 2 done: complete


def test_library_resume_refuses_a_config_that_changes_the_run(data, reference):
    with pytest.raises(CheckpointError, match="trained with lam=0.1, not 0.3"):
        resume_mod.load_state(reference, tiny_config(data, lam=0.3))


def test_resume_state_is_checked(data, reference, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    tensors, meta = ckpt_io.read_tensors(reference / "resume.safetensors")
    cfg = tiny_config(data)
    cases = {
        "history": ({**meta, "history": "[]"}, tensors, "disagrees with itself"),
        "optimizer": ({**meta, "optimizer": "{}"}, tensors, "bad resume metadata"),
        "weights": (meta, {**tensors, "model.feature.0.weight": torch.zeros(3, 128)}, "has shape"),
        "sums": ({**meta, "batch": "2", "epoch": "3",
                  "history": json.dumps(json.loads(meta["history"])[:2])}, tensors, "loss_sums"),
    }
    for name, (metadata, state, reason) in cases.items():
        ckpt_io.save_tensors(out / "resume.safetensors", state, metadata)
        with pytest.raises(CheckpointError, match=reason):
            train(cfg, out, resume=True)


def test_cli_resume_continues_an_interrupted_run(data, reference, tmp_path):
    out = tmp_path / "run"
    cfg = tiny_config(data)
    with pytest.raises(Interrupted):
        train(cfg, out, SignalAt(2, 2))
    result = CliRunner().invoke(app, ["train", "--resume", "--out", str(out), "--quiet"],
                                prog_name="cl")
    assert result.exit_code == 0, result.output
    assert_same_run(reference, out)
    result = CliRunner().invoke(app, ["train", "--resume", "--out", str(out)], prog_name="cl")
    assert result.exit_code == 0
    assert "has finished its 3 epochs" in result.stdout


def test_remove_temp_files_only_touches_ours(tmp_path):
    (tmp_path / "epochs").mkdir()
    ours = [tmp_path / ".model.safetensors.ab12.tmp", tmp_path / ".history.jsonl.x.tmp",
            tmp_path / "epochs" / ".epoch_003.safetensors.q.tmp"]
    theirs = [tmp_path / ".other.tmp", tmp_path / "model.safetensors.tmp", tmp_path / "x.txt"]
    for p in ours + theirs:
        p.write_bytes(b"x")
    runfolder.remove_temp_files(tmp_path)
    assert [p.exists() for p in ours] == [False] * 3
    assert [p.exists() for p in theirs] == [True] * 3


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes anywhere")
def test_read_only_out_fails_before_training(data, tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(TrainError, match="cannot write the run folder"):
            train(tiny_config(data), folder / "run")
    finally:
        folder.chmod(0o700)


# Subprocess tests: the real command line, real signals.

def start_training(out: Path, cfg: Config) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "cli", "train", *cli_flags(cfg), "--out", str(out),
                             "--quiet"], cwd=out.parent, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def wait_for_epochs(proc: subprocess.Popen, out: Path, epochs: int) -> None:
    deadline = time.monotonic() + SUBPROCESS_TIMEOUT_S
    while len(ckpt_io.read_history(out)) < epochs:
        assert proc.poll() is None, f"training ended early: {proc.communicate()}"
        assert time.monotonic() < deadline, "training made no progress"
        time.sleep(0.01)


@pytest.fixture
def proc_guard():
    procs = []
    yield procs
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait(timeout=30)


def training_past_epoch_1(data, tmp_path, proc_guard):
    """(run folder, config, process) of a `cl train` subprocess that has finished its first epoch."""
    out = tmp_path / "run"
    cfg = tiny_config(data)
    proc = start_training(out, cfg)
    proc_guard.append(proc)
    wait_for_epochs(proc, out, 1)
    return out, cfg, proc


def test_kill_9_keeps_every_completed_epoch_then_resume(data, reference, tmp_path, proc_guard):
    out, cfg, proc = training_past_epoch_1(data, tmp_path, proc_guard)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=SUBPROCESS_TIMEOUT_S)
    assert proc.returncode == -signal.SIGKILL
    done = [r["epoch"] for r in ckpt_io.read_history(out)]
    assert done and done == list(range(1, len(done) + 1))
    for epoch in done:                     # every epoch the history lists is whole and loadable
        name = epoch_name(epoch)
        ckpt = ckpt_io.load_checkpoint(out / "epochs" / name)
        build_from_checkpoint(ckpt)
        assert ckpt_io.read_tensors(out / "features" / name)[0]["test_features"].shape == (32, 2)
    assert ckpt_io.load_checkpoint(out / "model.safetensors").epoch >= done[-1]
    train(cfg, out, resume=True)
    assert_same_run(reference, out)


def test_ctrl_c_in_the_command_saves_and_says_how_to_resume(data, reference, tmp_path, proc_guard):
    out, cfg, proc = training_past_epoch_1(data, tmp_path, proc_guard)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=SUBPROCESS_TIMEOUT_S)
    assert proc.returncode == 130, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "SIGINT stopped training" in lines[0]
    assert lines[0].endswith(f"resume with: cl train --resume --out {out}")
    assert (out / "resume.safetensors").is_file()
    train(cfg, out, resume=True)
    assert_same_run(reference, out)
