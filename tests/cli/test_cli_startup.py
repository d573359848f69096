"""What a user meets before any training: help, version, completion, and none of them waits for torch."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

import centerloss
from cli.main import app

runner = CliRunner()
ROOT = Path(__file__).resolve().parents[2]

# Runs `cl ARGS` as the console script does, then says on stderr which heavy modules were loaded.
PROBE = """
import atexit, sys
heavy = ("torch", "matplotlib", "numpy", "safetensors", "PIL")
atexit.register(lambda: print("loaded:", [m for m in heavy if m in sys.modules], file=sys.stderr))
sys.argv = ["cl", *sys.argv[1:]]
from cli.main import main
main()
"""


def run_cl(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True,
                          env=env, timeout=60)


@pytest.mark.parametrize("args", [["--help"], ["train", "--help"], ["eval", "-h"], ["--version"]])
def test_help_and_version_do_not_import_torch(args):
    result = run_cl(*args)
    assert result.returncode == 0, result.stderr
    assert "loaded: []" in result.stderr, result.stderr
    assert result.stdout.strip()


def test_a_command_that_trains_still_imports_torch():
    # the probe itself can see torch: a bad flag of train is found after the core is imported
    result = run_cl("train", "--lambda", "-1")
    assert result.returncode == 2 and "loaded: ['torch'" in result.stderr, result.stderr


def test_a_command_ends_without_the_interpreter_s_teardown_but_after_its_exit_handlers():
    # tearing down an interpreter that loaded torch takes ~0.5 s: cl skips it once a command ran,
    # yet runs every exit handler (the probe's "loaded:" line is one) and flushes its output
    probe = PROBE.replace("from cli.main import main", "class Held:\n    def __del__(self):\n"
                          "        print('finalized', file=sys.stderr)\n"
                          "held = Held()\nfrom cli.main import main")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", probe, "train", "--print-config"],
                            capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == runner.invoke(app, ["train", "--print-config"]).output   # all of it
    assert yaml.safe_load(result.stdout)["lambda"] == 0.1
    assert "loaded: ['torch'" in result.stderr and "finalized" not in result.stderr, result.stderr
    # a usage error keeps its exit status
    bad = subprocess.run([sys.executable, "-c", probe, "train", "--lambda", "-1"],
                         capture_output=True, text=True, env=env, timeout=60)
    assert bad.returncode == 2 and "finalized" not in bad.stderr, bad.stderr
    # without a command (no torch) the interpreter ends as usual
    plain = subprocess.run([sys.executable, "-c", probe, "--version"], capture_output=True,
                           text=True, env=env, timeout=60)
    assert plain.returncode == 0 and "finalized" in plain.stderr, plain.stderr


def test_training_output_does_not_load_matplotlibs_figures():
    # the live view takes its colours from the plots package; drawing figures is for cl plot
    code = ("import sys; import cli.render; from centerloss.plots import palette; "
            "palette.class_rgb(10); print('matplotlib.figure' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=60)
    assert result.returncode == 0 and result.stdout.strip() == "False", result.stderr


@pytest.mark.parametrize("cmd", [[], ["train"], ["eval"], ["plot"], ["embed"]])
def test_dash_h_is_help(cmd):
    short, long = runner.invoke(app, [*cmd, "-h"]), runner.invoke(app, [*cmd, "--help"])
    assert short.exit_code == long.exit_code == 0
    assert short.output == long.output and "Usage: " in short.output


def test_version_prints_the_package_version():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.strip() == f"cl {centerloss.__version__}"


def test_top_level_help_shows_each_command_description_whole():
    result = runner.invoke(app, ["--help"])
    commands = result.output.split("Commands:")[1]
    assert "..." not in commands
    text = " ".join(commands.split())
    assert "Train a CNN with softmax + lambda * center loss and write the run folder." in text
    assert "Measure a trained model on the test split, or verify pairs of images with it." in text


def test_shell_completion_completes_commands_and_options():
    env = {**os.environ, "PYTHONPATH": str(ROOT), "_CL_COMPLETE": "complete_bash"}
    words = {"cl tr": ("1", "train"), "cl train --mo": ("2", "--model")}
    for line, (cword, expected) in words.items():
        result = subprocess.run([sys.executable, "-m", "cli"], capture_output=True, text=True, check=False,
                                env={**env, "COMP_WORDS": line, "COMP_CWORD": cword}, timeout=60)
        assert result.stdout.split() == [expected], (line, result.stdout, result.stderr)
    assert "--install-completion" in runner.invoke(app, ["--help"]).output


def test_choice_options_list_their_values_in_help():
    text = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "200"}).output
    for flag, choices in (("--model", "lenetspp|seed|resnet18"), ("--head", "softmax|sphereface|cosface|arcface"),
                          ("--dataset", "mnist|fashion-mnist|kmnist|cifar10|folder"),
                          ("--device", "auto|cuda|mps|cpu"), ("--precision", "auto|fp32|bf16")):
        assert f"{flag} [{choices}]" in text, flag
    assert "--keep-checkpoints [last|all|N]" in text and "<str>" not in text


def test_shell_completion_completes_choice_values():
    env = {**os.environ, "PYTHONPATH": str(ROOT), "_CL_COMPLETE": "complete_bash"}
    words = {"cl train --model ": ("3", ["lenetspp", "seed", "resnet18"]),
             "cl train --dataset f": ("3", ["fashion-mnist", "folder"]),
             "cl embed --split t": ("3", ["train", "test"]),
             "cl eval --precision b": ("3", ["bf16"]),
             "cl train --keep-checkpoints ": ("3", ["last", "all"])}
    for line, (cword, expected) in words.items():
        result = subprocess.run([sys.executable, "-m", "cli"], capture_output=True, text=True, check=False,
                                env={**env, "COMP_WORDS": line, "COMP_CWORD": cword}, timeout=60)
        assert result.stdout.split() == expected, (line, result.stdout, result.stderr)
