import json

import pytest
from typer.testing import CliRunner

from centerloss.store import checkpoint as ckpt_io
from cli.main import app

runner = CliRunner()


def test_train_then_eval_json(easy_data, tmp_path):
    out = tmp_path / "run"
    result = runner.invoke(app, ["train", "--model", "seed", "--epochs", "2", "--batch-size", "50",
                                 "--lr", "0.1", "--data-dir", str(easy_data), "--out", str(out)])
    assert result.exit_code == 0, result.output
    lines = [l for l in result.output.splitlines() if l.startswith("epoch ")]
    assert len(lines) == 2 and "test acc" in lines[-1]
    history = ckpt_io.read_history(out)
    result = runner.invoke(app, ["eval", "--run", str(out), "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["epoch"] == 2 and report["model"] == "seed" and report["lambda"] == 0.1
    assert abs(report["accuracy"] - history[-1]["test_accuracy"]) < 1e-6
    assert abs(report["nearest_center_accuracy"] - history[-1]["nearest_center_accuracy"]) < 1e-6
    assert sum(map(sum, report["confusion"])) == report["samples"] == 200
    correct = sum(report["confusion"][i][i] for i in range(10))
    assert abs(correct / 200 - report["accuracy"]) < 1e-6
    # JSON floats carry 6 significant digits (no float32 noise)
    assert report["compactness"] == pytest.approx(report["intra_distance"] / report["inter_distance"],
                                                  rel=1e-5)
    assert all(float(f"{v:.6g}") == v
               for v in (report["accuracy"], report["compactness"], report["intra_distance"]))


def test_eval_table_names_a_class_once_when_its_name_is_its_index(runs):
    """MNIST's classes are named 0-9: the confusion table's rows say "3", not "3 3"."""
    result = runner.invoke(app, ["eval", "--run", str(runs["flat"]), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    rows = [l.split() for l in result.output.splitlines() if l.strip()[:1].isdigit()]
    assert [r[0] for r in rows] == [str(i) for i in range(10)], result.output
    assert all(r[1].endswith("%") for r in rows)      # the accuracy follows the one name


def test_train_json_lines_are_one_object_per_epoch(easy_data, tmp_path):
    result = runner.invoke(app, ["train", "--model", "seed", "--epochs", "1", "--batch-size", "100",
                                 "--data-dir", str(easy_data), "--out", str(tmp_path / "r"), "--json"])
    assert result.exit_code == 0, result.output
    records = [json.loads(l) for l in result.output.splitlines()]
    assert len(records) == 1 and records[0]["epoch"] == 1 and 0 <= records[0]["test_accuracy"] <= 1


def test_negative_lambda_is_a_one_line_usage_error(tmp_path):
    result = runner.invoke(app, ["train", "--lambda", "-1", "--out", str(tmp_path / "r")])
    assert result.exit_code == 2
    assert "--lambda must be in [0, 10000] (0 is softmax alone), got -1" in result.output
    assert not (tmp_path / "r").exists()


def test_existing_run_is_not_overwritten_without_asking(easy_data, tmp_path):
    args = ["train", "--model", "seed", "--epochs", "1", "--batch-size", "200",
            "--data-dir", str(easy_data), "--out", str(tmp_path / "r")]
    assert runner.invoke(app, args).exit_code == 0
    before = (tmp_path / "r" / "model.safetensors").read_bytes()
    result = runner.invoke(app, args)
    assert result.exit_code == 1 and "already holds a run" in result.output
    assert (tmp_path / "r" / "model.safetensors").read_bytes() == before


def test_train_says_when_it_raised_the_default_epochs(easy_data, tmp_path, monkeypatch):
    from centerloss.config import recipe
    monkeypatch.setattr(recipe, "DEFAULT_EPOCHS", 1)
    monkeypatch.setattr(recipe, "MIN_STEPS", 6)        # 600 images in batches of 200: 3 an epoch
    out = tmp_path / "run"
    flags = ["train", "--model", "seed", "--batch-size", "200", "--data-dir", str(easy_data)]
    result = runner.invoke(app, [*flags, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "2 epochs (the default 1 raised to make 6 steps; --epochs N chooses) of 3 batches" in result.output
    assert [h["epoch"] for h in ckpt_io.read_history(out)] == [1, 2]
    result = runner.invoke(app, [*flags, "--epochs", "1", "--out", str(tmp_path / "given")])
    assert result.exit_code == 0, result.output
    assert "default 1 raised" not in result.output
    # epochs the user chose are never raised, but a run short of steps says so and what to change
    assert ("1 epoch (3 steps, fewer than the 6 the recipe aims at; --epochs 2 makes 6, a smaller "
            "--batch-size more steps an epoch) of 3 batches") in " ".join(result.output.split())
    result = runner.invoke(app, [*flags, "--epochs", "2", "--out", str(tmp_path / "enough")])
    assert "2 epochs of 3 batches" in result.output, result.output
    # a batch near the data set's size, where even the most epochs the default takes are too few
    monkeypatch.setattr(recipe, "MIN_STEPS", 9)
    monkeypatch.setattr(recipe, "MAX_AUTO_EPOCHS", 2)
    result = runner.invoke(app, [*flags, "--out", str(tmp_path / "short")])
    assert result.exit_code == 0, result.output
    assert ("2 epochs (the default 1 raised to its limit: 6 steps, fewer than the 9 it aims at; a "
            "smaller --batch-size makes more steps an epoch, --epochs N more epochs) of 3 batches"
            ) in " ".join(result.output.split())


def test_start_line_counts_the_batches_the_loop_trains(easy_data, tmp_path):
    # 600 images in batches of 599 leave a last batch of one, which BatchNorm cannot train on
    result = runner.invoke(app, ["train", "--model", "seed", "--batch-size", "599", "--epochs", "1",
                                 "--data-dir", str(easy_data), "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert "of 1 batch of 599" in result.output
