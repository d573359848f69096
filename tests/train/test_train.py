import json

import pytest
import torch

from centerloss.config.config import Config
from centerloss.store import checkpoint as ckpt_io
from centerloss.store.runfolder import available_epochs
from centerloss.train.loop import Callbacks, Schedule, train


class Recorder(Callbacks):
    def __init__(self):
        self.losses = []

    def on_batch(self, epoch, batch, batches, images, window):
        self.losses.append(window.read())


def test_short_run_learns_and_clusters(easy_data, tmp_path):
    cfg = Config(model="seed", epochs=4, batch_size=50, lr=0.1, data_dir=str(easy_data), lam=0.1,
                 snapshot_train=100)
    rec = Recorder()
    records = train(cfg, tmp_path / "run", rec)
    first = sum(ce for ce, _ in rec.losses[:3]) / 3
    last = sum(ce for ce, _ in rec.losses[-3:]) / 3
    assert last < 0.6 * first
    assert records[-1]["nearest_center_accuracy"] > records[0]["nearest_center_accuracy"]
    assert records[-1]["nearest_center_accuracy"] > 0.9
    assert records[-1]["test_accuracy"] > 0.5
    run = tmp_path / "run"
    assert available_epochs(run) == [2, 3, 4]         # the default --keep-checkpoints 3
    assert available_epochs(run, "features") == [1, 2, 3, 4]
    history = ckpt_io.read_history(run)
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    tensors, meta = ckpt_io.read_tensors(run / "features" / "epoch_004.safetensors")
    assert tensors["test_features"].shape == (200, 2)
    assert tensors["train_features"].shape == (100, 2)
    assert json.loads(meta["metrics"])["test_accuracy"] == history[-1]["test_accuracy"]


def test_lambda_zero_still_tracks_centers_but_leaves_features_to_softmax(easy_data, tmp_path):
    cfg = Config(model="seed", epochs=1, batch_size=100, lr=0.02, data_dir=str(easy_data), lam=0.0,
                 snapshot_train=0)
    train(cfg, tmp_path / "run")
    ckpt = ckpt_io.load_checkpoint(tmp_path / "run" / "model.safetensors")
    assert ckpt.centers.abs().sum() > 0


def test_same_seed_gives_the_same_weights(easy_data, tmp_path):
    cfg = Config(model="seed", epochs=1, batch_size=100, data_dir=str(easy_data), snapshot_train=0)
    train(cfg, tmp_path / "a")
    train(cfg, tmp_path / "b")
    a = ckpt_io.load_checkpoint(tmp_path / "a" / "model.safetensors")
    b = ckpt_io.load_checkpoint(tmp_path / "b" / "model.safetensors")
    assert all(torch.equal(a.model_state[k], b.model_state[k]) for k in a.model_state)
    assert torch.equal(a.centers, b.centers)


def test_the_default_run_has_one_cosine_and_no_restart():
    """The rate never rises again once warmed up: a warm restart cost the default MNIST run over a
    point of test accuracy in epoch 4, for no gain at the end."""
    s = Schedule.for_run(Config(epochs=12), 469)          # the full MNIST at the defaults
    assert s.warmup == 234 and s(s.warmup - 1) == pytest.approx(s.lr)
    after = [s(t) for t in range(s.warmup - 1, s.total + 1)]
    assert all(b <= a for a, b in zip(after, after[1:]))
    assert s(3 * 469) > 0.5 * s.lr                       # epoch 4 starts high, not near zero
    assert s(s.total - 1) < 1e-6 * s.lr and s(s.total) == 0.0


def test_a_resumed_run_follows_one_cosine_from_where_it_stopped(tmp_path):
    """The rate is a function of the step and the run's length alone, so a run begun under
    another schedule (0.1.0's restart) or extended with --epochs goes on along the one cosine of
    its new length from the step where it stopped."""
    from support.runs import make_data, tiny_config
    data = make_data(tmp_path / "data")            # 48 images in batches of 16: 3 steps an epoch
    out = tmp_path / "run"
    train(tiny_config(data, epochs=2), out)
    history = train(tiny_config(data, epochs=4), out, resume=True)
    longer = Schedule.for_run(tiny_config(data, epochs=4), 3)
    assert [r["lr"] for r in history[2:]] == pytest.approx([longer(3 * 3 - 1), longer(4 * 3 - 1)])
    assert history[2]["lr"] > history[3]["lr"] > 0


def test_schedule_warms_up_then_decays_to_zero():
    s = Schedule(lr=0.1, warmup=10, total=110)
    assert abs(s(0) - 0.01) < 1e-12 and abs(s(9) - 0.1) < 1e-12
    assert abs(s(60) - 0.05) < 1e-12
    assert s(110) == 0.0


def test_default_epochs_grow_until_the_run_takes_the_minimum_steps():
    from centerloss.config import recipe
    assert recipe.epochs_for(Config(), 469) == recipe.DEFAULT_EPOCHS == 12   # the full MNIST
    assert recipe.epochs_for(Config(batch_size=4096), 15) == 47             # ceil(700 / 15)
    assert recipe.epochs_for(Config(), 32) == 22                            # 4,000 images
    assert recipe.epochs_for(Config(), 1) == recipe.MAX_AUTO_EPOCHS         # a handful of images
    assert recipe.epochs_for(Config(epochs=3), 1) == 3                      # --epochs as given
    assert recipe.epochs_for(Config(epochs=30), 469) == 30
    assert Schedule.for_run(Config(batch_size=4096), 15).total == 47 * 15


def test_a_run_with_default_epochs_writes_the_number_it_chose(easy_data, tmp_path, monkeypatch):
    from centerloss.config import recipe
    monkeypatch.setattr(recipe, "DEFAULT_EPOCHS", 2)
    monkeypatch.setattr(recipe, "MIN_STEPS", 16)       # 600 images in batches of 200: 3 an epoch
    cfg = Config(model="seed", batch_size=200, data_dir=str(easy_data), snapshot_train=0)
    assert cfg.epochs is None
    records = train(cfg, tmp_path / "run")
    assert [r["epoch"] for r in records] == [1, 2, 3, 4, 5, 6]                # ceil(16 / 3)
    assert ckpt_io.load_checkpoint(tmp_path / "run" / "model.safetensors").config.epochs == 6
    # resuming the finished run with the default config trains nothing more
    assert train(cfg, tmp_path / "run", resume=True) == records
