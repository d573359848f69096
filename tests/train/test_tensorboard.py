"""cl train --tensorboard: read back with TensorBoard's own reader, every figure of history.jsonl,
the batch losses and learning rate, the epoch's feature picture and the projector embedding."""
from __future__ import annotations

import pytest
import torch
from support.cli import assert_one_line_error
from support.runs import cli_flags, make_data, tiny_config
from typer.testing import CliRunner

from centerloss.store import checkpoint as ckpt_io, runfolder
from centerloss.train import tensorboard as tb
from centerloss.train.callbacks import Fanout
from centerloss.train.loop import Callbacks, LossWindow
from cli.main import app

event_accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
runner = CliRunner()


@pytest.fixture(scope="module")
def tb_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("tb")
    cfg = tiny_config(make_data(root / "data"), epochs=2)
    run = root / "run"
    result = runner.invoke(app, ["train", *cli_flags(cfg), "--out", str(run), "--tensorboard"])
    assert result.exit_code == 0, result.output
    events = event_accumulator.EventAccumulator(str(runfolder.tensorboard_path(run)),
                                                size_guidance={"scalars": 0, "images": 0})
    events.Reload()
    return run, events


def test_every_number_of_history_is_a_scalar_per_epoch(tb_run):
    run, events = tb_run
    history = ckpt_io.read_history(run)
    numbers = [k for k, v in history[0].items()
               if k != "epoch" and isinstance(v, (int, float)) and not isinstance(v, bool)]
    assert {"test_accuracy", "train_ce", "train_center", "lr", "compactness"} <= set(numbers)
    for name in numbers:
        points = events.Scalars(f"epoch/{name}")
        assert [p.step for p in points] == [1, 2], name
        for p, record in zip(points, history):
            assert p.value == pytest.approx(record[name], rel=1e-5, abs=1e-6), name


def test_batch_losses_and_learning_rate_are_logged_at_their_steps(tb_run):
    run, events = tb_run
    history = ckpt_io.read_history(run)
    for name in ("batch/train_ce", "batch/train_center", "batch/lr"):
        assert [p.step for p in events.Scalars(name)] == [1, 2, 3, 4, 5, 6], name   # 3 batches an epoch
    ce = [p.value for p in events.Scalars("batch/train_ce")]
    # each point is one batch here: an epoch's three average to the epoch's train_ce
    assert sum(ce[:3]) / 3 == pytest.approx(history[0]["train_ce"], rel=1e-4)
    assert events.Scalars("batch/lr")[-1].value == pytest.approx(history[-1]["lr"], rel=1e-5)


def test_the_feature_picture_of_each_epoch_is_an_image(tb_run):
    _, events = tb_run
    images = events.Images("features/test")
    assert [i.step for i in images] == [1, 2]
    assert images[0].width > 300 and images[0].height > 200
    assert images[0].encoded_image_string.startswith(b"\x89PNG")


def test_the_last_epochs_test_features_are_a_projector_embedding(tb_run):
    run, _ = tb_run
    folder = runfolder.tensorboard_path(run)
    config = (folder / "projector_config.pbtxt").read_text()
    assert "metadata.tsv" in config and "sprite.png" in config
    embedding = folder / "00002" / "test_features"
    snapshot, _ = ckpt_io.read_tensors(runfolder.snapshot_path(run, 2))
    rows = [[float(x) for x in line.split("\t")]
            for line in (embedding / "tensors.tsv").read_text().splitlines()]
    assert torch.allclose(torch.tensor(rows), snapshot["test_features"], atol=1e-4)
    names = (embedding / "metadata.tsv").read_text().splitlines()
    classes = ckpt_io.load_checkpoint(runfolder.model_path(run)).classes
    assert names == [classes[k] for k in snapshot["test_labels"].tolist()]
    assert (embedding / "sprite.png").read_bytes().startswith(b"\x89PNG")


def test_overwrite_clears_the_old_event_files_and_nothing_else(tb_run, tmp_path):
    run, _ = tb_run
    (runfolder.tensorboard_path(run) / "mine.txt").write_text("keep")
    runfolder.clear_tensorboard(run)
    assert [p.name for p in runfolder.tensorboard_path(run).iterdir()] == ["mine.txt"]


def test_without_the_package_it_is_one_line_naming_the_install(tmp_path, monkeypatch):
    monkeypatch.setattr(tb, "SummaryWriter", None)
    cfg = tiny_config(make_data(tmp_path / "data"), epochs=1)
    result = runner.invoke(app, ["train", *cli_flags(cfg), "--out", str(tmp_path / "run"), "--tensorboard"])
    assert_one_line_error(result, 1, "--tensorboard needs the tensorboard package; install it with: "
                                     "pip install 'cl[tensorboard]'")
    assert not (tmp_path / "run").exists()


class Reader(Callbacks):
    def __init__(self, every: int):
        self.every, self.seen = every, []

    def on_batch(self, epoch, batch, batches, images, window):
        if batch % self.every == 0:
            self.seen.append(window.read())


def test_fanout_gives_each_listener_every_batch_of_the_loss():
    window = LossWindow(torch.device("cpu"))
    often, seldom = Reader(1), Reader(2)
    fan = Fanout(often, seldom)
    for batch, (ce, center) in enumerate([(1.0, 10.0), (3.0, 30.0), (5.0, 50.0), (7.0, 70.0)], 1):
        window.add(torch.tensor(ce), torch.tensor(center))
        fan.on_batch(1, batch, 4, batch * 16, window)
    assert often.seen == [(1.0, 10.0), (3.0, 30.0), (5.0, 50.0), (7.0, 70.0)]
    assert seldom.seen == [(2.0, 20.0), (6.0, 60.0)]
