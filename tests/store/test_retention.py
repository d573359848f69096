"""--keep-checkpoints: the latest epoch checkpoints stay, only cl's own files go, and eval, plot
and resume keep working with what is left."""
from __future__ import annotations

import json
import os

import pytest
from support.cli import assert_one_line_error
from support.runs import cli_flags, make_data, tiny_config
from typer.testing import CliRunner

from centerloss.config.config import Config
from centerloss.config.keep import keep_count
from centerloss.errors import OptionError
from centerloss.model.build import checkpoint_size
from centerloss.store import checkpoint as ckpt_io, retention, runfolder
from cli.main import app

runner = CliRunner()


def epoch_files(run):
    return sorted(p.name for p in (run / "epochs").iterdir())


def fake_run(tmp_path, epochs=5):
    run = tmp_path / "run"
    (run / "epochs").mkdir(parents=True)
    for e in range(1, epochs + 1):
        runfolder.checkpoint_path(run, e).write_bytes(b"x" * e)
    return run


@pytest.mark.parametrize("value, count", [("last", 1), ("all", None), ("3", 3), (2, 2), ("ALL", None)])
def test_keep_count_reads_last_all_and_numbers(value, count):
    assert keep_count(value) == count


@pytest.mark.parametrize("value", ["0", "-1", "some", "2.5", ""])
def test_keep_count_refuses_anything_else_naming_the_flag(value):
    with pytest.raises(OptionError, match="--keep-checkpoints must be last, all or a number"):
        keep_count(value)


def test_prune_keeps_the_latest_and_never_a_users_file_or_a_link(tmp_path):
    run = fake_run(tmp_path)
    outside = tmp_path / "elsewhere.safetensors"
    outside.write_bytes(b"mine")
    (run / "epochs" / "epoch_000.safetensors").symlink_to(outside)      # a link in cl's name
    (run / "epochs" / "notes.txt").write_text("mine")
    (run / "epochs" / "epoch_001.safetensors.bak").write_text("mine")
    removed = retention.prune(run, 2)
    assert sorted(p.name for p in removed) == ["epoch_001.safetensors", "epoch_002.safetensors",
                                               "epoch_003.safetensors"]
    assert epoch_files(run) == ["epoch_000.safetensors", "epoch_001.safetensors.bak",
                                "epoch_004.safetensors", "epoch_005.safetensors", "notes.txt"]
    assert outside.read_bytes() == b"mine"
    assert retention.prune(run, None) == [] and len(epoch_files(run)) == 5


def test_prune_never_goes_through_a_linked_epochs_folder(tmp_path):
    real = fake_run(tmp_path / "real")
    run = tmp_path / "run"
    run.mkdir()
    os.symlink(real / "epochs", run / "epochs")
    assert retention.prune(run, 1) == []
    assert len(epoch_files(real)) == 5


def test_checkpoint_size_bounds_a_real_checkpoint_from_above(runs):
    path = runs["flat"] / "model.safetensors"
    cfg = ckpt_io.load_checkpoint(path).config
    bound = checkpoint_size(cfg, 10, [1, 28, 28])
    actual = path.stat().st_size
    assert actual <= bound <= actual + 32_768, (actual, bound)


def test_a_run_written_before_the_policy_keeps_every_epoch():
    saved = json.loads(Config().to_json())
    del saved["keep_checkpoints"]
    assert Config.from_json(json.dumps(saved)).keep_checkpoints == "all"
    assert Config().keep_checkpoints == "3"


def test_cli_keeps_the_latest_and_eval_plot_resume_still_work(tmp_path):
    cfg = tiny_config(make_data(tmp_path / "data"), epochs=3)
    run = tmp_path / "run"
    result = runner.invoke(app, ["train", *cli_flags(cfg), "--out", str(run), "--keep-checkpoints", "last"])
    assert result.exit_code == 0, result.output
    assert "keeping the last epoch's checkpoint (" in result.output.splitlines()[0]
    assert epoch_files(run) == ["epoch_003.safetensors"]
    assert runfolder.available_epochs(run, runfolder.FEATURES) == [1, 2, 3]
    assert runfolder.model_path(run).is_file()
    result = runner.invoke(app, ["eval", "--run", str(run), "--epoch", "1"])
    assert_one_line_error(result, 1, "has no epoch 1 (its checkpoint was pruned; "
                                     "--keep-checkpoints all keeps every epoch's); epochs present: 3")
    assert runner.invoke(app, ["eval", "--run", str(run), "--epoch", "3"]).exit_code == 0
    for args in (["--epoch", "1"], ["--gif"], ["--curves"]):
        result = runner.invoke(app, ["plot", "--run", str(run), *args])
        assert result.exit_code == 0, result.output
    # a resumed run may change the policy: 2 now, so epochs 3 and 4 stay
    result = runner.invoke(app, ["train", "--resume", "--out", str(run), "--epochs", "4",
                                 "--keep-checkpoints", "2"])
    assert result.exit_code == 0, result.output
    assert epoch_files(run) == ["epoch_003.safetensors", "epoch_004.safetensors"]


def test_default_policy_is_stated_on_the_start_line(tmp_path):
    cfg = tiny_config(make_data(tmp_path / "data"), epochs=1)
    result = runner.invoke(app, ["train", *cli_flags(cfg), "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert "keeping 3 epoch checkpoints (14 MB at most, with model.safetensors)" in result.output
