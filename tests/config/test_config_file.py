"""cl train --config FILE.yaml, --print-config and RUN/config.yaml: keys are the options without
dashes, flags win over the file, bad files are one line naming the file and the key, and a run
repeated from its config.yaml is the same run."""
from __future__ import annotations

import pytest
import yaml
from support.cli import assert_one_line_error
from support.runs import cli_flags, make_data, same_tensors, tiny_config
from typer.testing import CliRunner

from centerloss.config import file as config_file, recipe
from centerloss.config.config import Config
from centerloss.errors import ConfigError, OptionError
from centerloss.store import runfolder
from centerloss.store.configfile import read_config
from cli.main import app

runner = CliRunner()


def write(tmp_path, text: str, name: str = "c.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_keys_are_option_names_in_either_spelling(tmp_path):
    path = write(tmp_path, "lambda: 0.2\nbatch-size: 64\nfeature_dim: 3\nlr: 1e-3\nkeep-checkpoints: all\n"
                           "tensorboard: true\nout: runs/a\nmomentum: 0.8\n")
    assert read_config(path) == {"lam": 0.2, "batch_size": 64, "feature_dim": 3, "lr": 0.001,
                                 "keep_checkpoints": "all", "tensorboard": True, "out": "runs/a",
                                 "momentum": 0.8}
    assert read_config(write(tmp_path, "")) == {}


def test_dump_reads_back_as_the_same_config():
    cfg = Config(lam=0.3, head="cosface", model="seed", feature_dim=8, data_dir="/d ata/x: y",
                 epochs=7, keep_checkpoints="all", lr=0.02)
    back = Config(**config_file.parse(config_file.dump(cfg), "dumped"))
    assert back == cfg
    for keep in ("last", "5"):
        text = config_file.dump(Config(keep_checkpoints=keep))
        assert Config(**config_file.parse(text, "dumped")).keep_checkpoints == keep


def test_compile_takes_true_false_or_blocks(tmp_path):
    for text, value in (("compile: blocks\n", "blocks"), ("compile: true\n", True),
                        ("compile: false\n", False), ("compile: null\n", None)):
        assert read_config(write(tmp_path, text)).get("compile", None) == value
    cfg = Config(compile="blocks")
    assert Config(**config_file.parse(config_file.dump(cfg), "dumped")) == cfg
    assert Config.from_json(cfg.to_json()).compile == "blocks"      # a checkpoint's metadata
    with pytest.raises(OptionError, match="^compile must be true, false or blocks, got 'all'$"):
        Config(compile="all").validate()
    with pytest.raises(OptionError, match="got 1$"):
        Config(compile=1).validate()        # JSON metadata holding a number is not true


def test_dump_says_what_the_default_rules_chose():
    text = config_file.dump(Config(epochs=22), epochs_chosen=True)
    assert "epochs: 22  # chosen by the default rule" in text
    assert "lr: null  # the default: 0.05 * sqrt(batch_size / 128) = 0.05" in text
    assert f"epochs: null  # the default, chosen when the data are loaded: {recipe.DEFAULT_EPOCHS}" \
        in config_file.dump(Config())


BAD = [
    ("not a mapping", "- lambda\n- 0.1\n", "a config file must be a mapping", None),
    ("a scalar", "lambda\n", "this one holds a string", None),
    ("unknown key", "lamda: 0.1\n", "unknown key 'lamda'; keys are cl train's options", None),
    ("wrong type", "batch_size: many\n", "key 'batch_size' must be an integer, got string 'many'", None),
    ("a bool for a number", "lambda: yes\n", "key 'lambda' must be a number, got boolean True", None),
    ("out of range", "alpha: 2\n", "key 'alpha': --alpha must be in (0, 1]", None),
    ("bad choice", "model: vgg\n", "key 'model': unknown model 'vgg'; choose one of:", None),
    ("bad keep", "keep_checkpoints: none\n", "key 'keep_checkpoints': --keep-checkpoints must be", None),
    ("bad compile", "compile: whole\n", "key 'compile' must be true, false or blocks, got string 'whole'", None),
    ("twice", "batch_size: 8\nbatch-size: 16\n", "'batch_size' and 'batch-size' set the same option", None),
    ("empty out", "out: ''\n", "key 'out' is empty; give the run folder", None),
    ("command line only", "resume: true\n", "key 'resume': --resume is given on the command line only", None),
    ("not yaml", "lambda: [0.1\n", "not valid YAML at line 2", None),
    ("a python tag", "lambda: !!python/object/apply:os.system ['true']\n", "not valid YAML", None),
    ("not utf-8", b"lambda: \xff\xfe\n", "not UTF-8 text", None),
    ("huge", b"#" * (config_file.MAX_BYTES + 1), "more than the 1,048,576 cl reads", None),
]


@pytest.mark.parametrize("text, message", [(t, m) for _, t, m, _ in BAD], ids=[b[0] for b in BAD])
def test_a_bad_file_is_one_line_naming_the_file(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    result = runner.invoke(app, ["train", "--config", str(path), "--out", str(tmp_path / "run")])
    assert_one_line_error(result, 2, f"{path}: ")
    assert message in result.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("where, message", [("missing.yaml", "no such file"), (".", "not a file")])
def test_a_missing_file_or_a_folder_is_one_line(tmp_path, where, message):
    result = runner.invoke(app, ["train", "--config", str(tmp_path / where), "--print-config"])
    assert_one_line_error(result, 2, message)


def test_flags_on_the_command_line_win_over_the_file(tmp_path):
    path = write(tmp_path, "lambda: 0.2\nmodel: seed\nbatch_size: 64\n")
    result = runner.invoke(app, ["train", "--config", str(path), "--lambda", "0.3", "--print-config"])
    assert result.exit_code == 0, result.output
    printed = yaml.safe_load(result.stdout)
    assert printed["lambda"] == 0.3 and printed["model"] == "seed" and printed["batch_size"] == 64
    assert printed["epochs"] is None and printed["dataset"] == "mnist"


def test_print_config_trains_nothing_and_refuses_what_training_would(tmp_path):
    result = runner.invoke(app, ["train", "--print-config", "--out", str(tmp_path / "run")])
    assert result.exit_code == 0 and not (tmp_path / "run").exists()
    assert Config(**config_file.parse(result.stdout, "stdout")) == Config(keep_checkpoints="3")
    result = runner.invoke(app, ["train", "--print-config", "--head", "cosface", "--margin", "3"])
    assert result.exit_code == 2 and "--margin" in result.stderr


def test_a_run_repeated_from_its_config_yaml_is_the_same_run(tmp_path, monkeypatch):
    # the default epochs, kept small: the file must hold the number the rule chose
    monkeypatch.setattr(recipe, "DEFAULT_EPOCHS", 2)
    monkeypatch.setattr(recipe, "MAX_AUTO_EPOCHS", 2)
    cfg = tiny_config(make_data(tmp_path / "data"))
    flags = [f for f in cli_flags(cfg) if f not in ("--epochs", str(cfg.epochs))]
    first, second = tmp_path / "first", tmp_path / "second"
    assert runner.invoke(app, ["train", *flags, "--out", str(first), "-q"]).exit_code == 0
    saved = runfolder.config_path(first).read_text()
    assert "epochs: 2  # chosen by the default rule" in saved
    result = runner.invoke(app, ["train", "--config", str(runfolder.config_path(first)), "--out", str(second), "-q"])
    assert result.exit_code == 0, result.output
    assert same_tensors(runfolder.model_path(first), runfolder.model_path(second))
    assert read_config(runfolder.config_path(second)) == read_config(runfolder.config_path(first))


def test_resume_with_a_config_file_and_an_old_run_without_config_yaml(tmp_path):
    cfg = tiny_config(make_data(tmp_path / "data"), epochs=1)
    run = tmp_path / "run"
    assert runner.invoke(app, ["train", *cli_flags(cfg), "--out", str(run), "-q"]).exit_code == 0
    own = tmp_path / "own.yaml"
    own.write_text(runfolder.config_path(run).read_text())
    runfolder.config_path(run).unlink()                  # as a run written before config.yaml
    result = runner.invoke(app, ["train", "--resume", "--config", str(own), "--out", str(run),
                                 "--epochs", "2", "-q"])
    assert result.exit_code == 0, result.output
    assert read_config(runfolder.config_path(run))["epochs"] == 2     # written again, extended
    other = write(tmp_path, "lambda: 0.5\n")
    result = runner.invoke(app, ["train", "--resume", "--config", str(other), "--out", str(run), "--epochs", "3"])
    assert_one_line_error(result, 2, "--lambda 0.5 conflicts with the run being resumed")


def test_parse_names_the_source_in_library_use():
    with pytest.raises(ConfigError, match=r"^mine\.yaml: unknown key 'lamda'"):
        config_file.parse("lamda: 1", "mine.yaml")
