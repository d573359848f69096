"""Every option defined once (centerloss/options.py): its default, its choices, its help."""
from __future__ import annotations

import re

import pytest
from support.cli import assert_one_line_error
from typer.testing import CliRunner

from centerloss.config import options, recipe
from centerloss.config.config import Config
from cli.main import app

COMMANDS = ("train", "eval", "embed", "plot", "export")


def help_blocks(command: str) -> dict[str, str]:
    """Each option's whole help entry in `cl COMMAND --help`, its wrapped lines joined."""
    result = CliRunner().invoke(app, [command, "--help"])
    assert result.exit_code == 0, result.output
    blocks: dict[str, str] = {}
    name = None
    for line in result.output.splitlines():
        start = re.match(r"^  (?:-\w, )?(--[\w-]+)", line)
        if start:
            name = start.group(1)
            blocks[name] = line
        elif name and line.startswith("   "):
            blocks[name] += " " + line.strip()
        else:
            name = None
    return blocks


@pytest.mark.parametrize("command", COMMANDS)
def test_help_shows_each_default_once(command):
    blocks = help_blocks(command)
    assert blocks
    for flag, text in blocks.items():
        assert text.count("[default:") <= 1, text


def test_help_defaults_are_the_config_defaults():
    blocks = help_blocks("train")
    for flag, field in (("--lambda", "lam"), ("--alpha", "alpha"), ("--batch-size", "batch_size"),
                        ("--model", "model"), ("--augment", "augment"), ("--precision", "precision")):
        assert f"[default: {getattr(Config, field)}]" in blocks[flag], blocks[flag]
    assert "[default: 64]" in blocks["--image-size"] and "[default: 0]" not in blocks["--image-size"]
    # --epochs' default is a rule, stated with recipe.py's numbers (Config holds None)
    assert (f"[default: {recipe.DEFAULT_EPOCHS}," in blocks["--epochs"]
            and f"{recipe.MIN_STEPS} steps" in blocks["--epochs"]), blocks["--epochs"]


@pytest.mark.parametrize("command", [
    ["train", "--out", "{tmp}/run"], ["eval", "--run", "{tmp}/none"],
    ["embed", "--run", "{tmp}/none", "-o", "{tmp}/e.csv"],
])
def test_fp16_is_refused_wherever_a_precision_flag_is(command, tmp_path):
    args = [a.replace("{tmp}", str(tmp_path)) for a in command]
    result = CliRunner().invoke(app, [*args, "--precision", "fp16"])
    assert_one_line_error(result, 2, "unknown precision 'fp16'; choose one of: auto, fp32, bf16")
    assert not (tmp_path / "run").exists() and not (tmp_path / "e.csv").exists()


def test_every_command_with_a_device_has_a_precision():
    for command in COMMANDS:
        blocks = help_blocks(command)
        assert ("--device" in blocks) == ("--precision" in blocks), command


def test_a_check_names_the_flag_and_what_it_takes():
    with pytest.raises(options.OptionError, match="--split must be train or test, got 'val'"):
        options.check("--split", "val")
    with pytest.raises(options.OptionError, match="--metric must be one of: cosine, euclidean"):
        options.check("--metric", "l1")
    with pytest.raises(options.OptionError, match=r"--folds must be in \[2, 100\]"):
        options.check_all(folds=1)
    options.check_all(epoch=None, split="train", metric="cosine")


def test_dataset_choices_cover_the_loaders():
    from centerloss.data.idx import DATASETS
    assert set(DATASETS) <= set(options.DATASET_NAMES)


def test_the_runtime_refuses_a_precision_it_cannot_honour():
    import torch

    from centerloss.device.runtime import Runtime
    with pytest.raises(options.OptionError, match="unknown precision 'fp16'"):
        Runtime.resolve("cpu", "fp16")
    fp32 = Runtime.resolve("cpu", "fp32")
    assert fp32.device == torch.device("cpu") and fp32.is_main
    with fp32.autocast():
        assert not torch.is_autocast_enabled("cpu")
    with Runtime.resolve("cpu", "bf16").autocast():
        assert torch.is_autocast_enabled("cpu")
    assert Runtime.resolve("cpu", "auto").precision in ("fp32", "bf16")
