"""bench/bench.py runs end to end on tiny data and its figures are consistent (no timing thresholds)."""
import importlib.util
import re
import sys
import tempfile
from pathlib import Path

import pytest
from support.data import make_dataset

BENCH = Path(__file__).resolve().parent.parent / "bench" / "bench.py"


def load_bench():
    spec = importlib.util.spec_from_file_location("bench_script", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_prints_both_pipelines_their_ratio_and_time_to_accuracy(tmp_path, capsys):
    data = make_dataset(tmp_path, n_train=200, n_test=50)
    load_bench().main(["--model", "seed", "--data-dir", str(data), "--batches", "2", "--rounds", "1",
                       "--batch-size", "50", "--eval-images", "0", "--to-accuracy", "0.01",
                       "--epochs", "1"])
    out = capsys.readouterr().out
    assert re.search(r"^  CPU .+, \d+ cores: .*avx2.*; \d+ threads?( \(OMP_NUM_THREADS\))?, ", out, re.M) or \
        re.search(r"^  CPU .+, \d+ cores: none of ", out, re.M)
    assert re.search(r"^  CPU .*; bf16 flags: [a-z0-9_ ]+; ", out, re.M)
    assert re.search(r"^  load average before: [\d.]+ [\d.]+ [\d.]+$", out, re.M)
    assert re.search(r"^load average after: [\d.]+ [\d.]+ [\d.]+$", out, re.M)
    assert re.search(r"^  seed: [\d.]+ MFLOP per trained image, [\d.]+ per evaluated image "
                     r"\(torch.utils.flop_counter\)$", out, re.M)
    ceiling = re.search(r"^ceiling: 2048 x 2048 matrix product bf16 ([\d,]+) GFLOP/s, fp32 ([\d,]+) "
                        r"GFLOP/s$", out, re.M)
    assert ceiling and all(float(c.replace(",", "")) > 0 for c in ceiling.groups())
    assert re.search(r"^  trained \d+ steps of the schedule \(peak learning rate [\d.]+ from step "
                     r"\d+\), every timed loss finite$", out, re.M)
    shares = re.findall(r"^  cl: ([\d,]+) GFLOP/s, (\d+)% of the ceiling \((fp32|bf16)\); classic: "
                        r"([\d,]+) GFLOP/s, (\d+)% of the ceiling \(fp32\)", out, re.M)
    assert len(shares) == 3      # training, evaluation, embedding
    rows = re.findall(r"^(training|evaluation|embedding) images/s: cl ([\d,]+)  classic ([\d,]+)  "
                      r"ratio ([\d.]+)x", out, re.M)
    assert [r[0] for r in rows] == ["training", "evaluation", "embedding"]
    for _, cl, classic, ratio in rows:
        cl, classic = float(cl.replace(",", "")), float(classic.replace(",", ""))
        assert cl > 0 and classic > 0
        # the printed ratio is of the unrounded rates: allow for the rounding of the two figures
        assert abs(float(ratio) - cl / classic) <= 0.01 + 0.6 * (1 / cl + 1 / classic) * cl / classic
    reached = re.search(r"^reached 1\.00% test accuracy in epoch 1, ([\d.]+) s after `cl train` "
                        r"started \(([\d.]+) s of it training\)$", out, re.M)
    assert reached and 0 < float(reached[2]) < float(reached[1])


@pytest.mark.parametrize("flags, passed", [([], []), (["--compile"], ["--compile"]),
                                            (["--no-compile"], ["--no-compile"]),
                                            (["--compile-blocks"], ["--config"])])
def test_time_to_accuracy_runs_cl_train_compiled_as_asked(tmp_path, capsys, monkeypatch, flags, passed):
    bench = load_bench()
    seen = {}

    class FakeTrain:       # one epoch's JSON line, as `cl train --json` prints it
        def __init__(self, command, **kwargs):
            seen["command"] = command
            config = command[command.index("--config") + 1] if "--config" in command else None
            seen["config"] = Path(config).read_text() if config else None
            self.stdout = iter(['{"epoch": 1, "test_accuracy": 0.5, "train_seconds": 1.0}\n'])
            self.returncode = -9

        def kill(self):
            pass

        def wait(self):
            return self.returncode

    monkeypatch.setattr(bench.subprocess, "Popen", FakeTrain)
    args = bench.parse_args(["--to-accuracy", "0.4", *flags])
    cfg = bench.Config(compile="blocks" if args.compile_blocks else args.compile)
    bench.bench_to_accuracy(args, cfg, str(tmp_path))
    command = seen["command"]
    assert [f for f in ("--compile", "--no-compile", "--config") if f in command] == passed
    assert seen["config"] == ("compile: blocks\n" if passed == ["--config"] else None)
    assert "reached 40.00% test accuracy in epoch 1" in capsys.readouterr().out


def test_bench_refuses_a_rate_when_a_timed_loss_is_not_finite(tmp_path, capsys):
    data = make_dataset(tmp_path, n_train=200, n_test=50)
    with pytest.raises(SystemExit) as stop:
        load_bench().main(["--model", "seed", "--data-dir", str(data), "--batches", "3", "--rounds", "1",
                           "--batch-size", "50", "--precision", "fp32", "--lr", "1000",
                           "--grad-clip", "0"])
    assert re.fullmatch(r"error: (cl|classic): the loss of timed step \d+ of the round is not finite; "
                        r"no rate is printed for NaN arithmetic", stop.value.code)
    assert "images/s" not in capsys.readouterr().out


def test_bench_reports_bad_options_in_one_line():
    with pytest.raises(SystemExit) as stop:
        load_bench().main(["--model", "vgg"])
    assert stop.value.code == "error: unknown model 'vgg'; choose one of: lenetspp, seed, resnet18"


def test_busy_bench_prints_quiet_and_busy_side_by_side(tmp_path, capsys):
    data = make_dataset(tmp_path, n_train=64, n_test=32)
    spec = importlib.util.spec_from_file_location("busy_script", BENCH.parent / "busy.py")
    busy = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(busy)
    busy.main(["--model", "seed", "--data-dir", str(data), "--train-images", "64", "--test-images",
               "32", "--epochs", "1", "--batch-size", "32", "--settings", "cl", "--precision", "fp32"])
    out = capsys.readouterr().out
    assert re.search(r"^CPU: .+, \d+ cores: ", out, re.M)
    runs = re.findall(r"^  cl +(quiet|busy) +([\d,]+) images/s .*\(fp32, (\d+) threads?, spin 3000 then wait\)$",
                      out, re.M)
    assert sorted(r[0] for r in runs) == ["busy", "quiet"]
    quiet, busy_rate = (float(r[1].replace(",", "")) for r in sorted(runs, key=lambda r: r[0] != "quiet"))
    row = re.search(r"^cl +([\d,]+) +([\d,]+) +([\d.]+)x", out, re.M)
    assert row and float(row[1].replace(",", "")) == round(quiet)
    assert abs(float(row[3]) - busy_rate / quiet) < 0.01 + 2 / quiet * busy_rate / quiet


def test_sweep_prints_a_row_per_cell_and_names_a_diverged_one(tmp_path, capsys, monkeypatch):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))   # where the sweep's throwaway runs go
    spec = importlib.util.spec_from_file_location("sweep_script", BENCH.parent / "sweep.py")
    sweep = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(sweep)
    data = make_dataset(tmp_path, n_train=120, n_test=40)
    base = ["--data-dir", str(data), "--subset", "60", "--epochs", "1", "--set", "model=seed",
            "--set", "device=cpu", "--set", "precision=fp32"]
    row = re.compile(r"^(\S.*?)\s+([\d.]+) +(?:\d+ +([\d.]+)% +([\d.]+)% +([\d.]+) +(\d+)|- +- +- +- +-)"
                     r" +(ok|diverged) +([\d.]+)$", re.M)
    sweep.main(base + ["--vary", "batch_size=20,60"])
    out = capsys.readouterr().out
    assert re.search(r"^sweep: 3 cells, 1 epochs each, subset of 60 training split; .*threads", out, re.M)
    rows = row.findall(out)
    assert [r[0] for r in rows] == ["model=seed, device=cpu, precision=fp32",
                                    "model=seed, device=cpu, precision=fp32, batch_size=20",
                                    "model=seed, device=cpu, precision=fp32, batch_size=60"]
    assert [r[6] for r in rows] == ["ok", "ok", "ok"]
    assert [int(line.split()[-7]) for line in out.splitlines() if line.endswith(tuple("0123456789"))
            and "cells" not in line] == [1, 1, 1]         # the epochs column: --epochs 1
    for r in rows:
        assert 0 <= float(r[2]) <= 100 and 0 <= float(r[3]) <= 100 and int(r[5]) == 0
    # the learning rate each cell used: the batch-size rule
    assert [float(r[1]) for r in rows] == pytest.approx(
        [0.05, 0.05 * (20 / 128) ** 0.5, 0.05 * (60 / 128) ** 0.5], abs=1e-4)
    sweep.main(base + ["--set", "lr=1000", "--set", "grad_clip=0", "--set", "batch_size=20"])
    rows = row.findall(capsys.readouterr().out)
    assert len(rows) == 1 and rows[0][6] == "diverged"
    assert list(scratch.glob("cl-sweep-*")) == []    # without --keep, the runs' folders are removed


def test_whole_command_bench_refuses_a_run_whose_loss_is_not_finite(monkeypatch):
    spec = importlib.util.spec_from_file_location("whole_script", BENCH.parent / "whole.py")
    whole = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(whole)
    nan = [sys.executable, "-c", 'print(\'{"train_ce": NaN, "test_accuracy": 0.1}\')']
    with pytest.raises(SystemExit) as stop:
        whole.timed(nan, "cl")
    assert stop.value.code == "error: cl: the training loss is not finite (nan); no time is printed"
    seconds, record = whole.timed([sys.executable, "-c", 'print(\'{"train_loss": 0.5, "test_accuracy": 0.9}\')'],
                                  "classic")
    assert seconds > 0 and record["test_accuracy"] == 0.9


def test_profile_prints_the_shares_of_a_step(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("profile_script", BENCH.parent / "profile_step.py")
    prof = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(prof)
    data = make_dataset(tmp_path, n_train=100, n_test=20)
    prof.main(["--data-dir", str(data), "--model", "seed", "--batch-size", "50", "--steps", "2",
               "--precision", "fp32", "--rows", "1"])
    shares = re.findall(r"^  (\S.*?) +([\d.]+)%$", capsys.readouterr().out, re.M)
    assert "convolution" in [s[0] for s in shares]
    assert abs(sum(float(s[1]) for s in shares) - 100) < 0.5


def test_compile_bench_times_a_healthy_first_step_and_refuses_a_loss_that_is_not(
        tmp_path, monkeypatch, capsys):
    import json
    import subprocess

    import torch

    from centerloss.device import isa_warmup
    spec = importlib.util.spec_from_file_location("compile_script", BENCH.parent / "compile_time.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    data = make_dataset(tmp_path, n_train=100, n_test=20)
    monkeypatch.setattr(torch, "compile", lambda model, **kw: model)    # minutes on a CPU
    monkeypatch.setattr(isa_warmup, "start", isa_warmup.start)          # --no-child replaces it
    bench.main(["--one", "--no-child", "--model", "seed", "--data-dir", str(data),
                "--batch-size", "20", "--precision", "fp32"])
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert len(record["losses"]) == 3 and all(0 < loss < 100 for loss in record["losses"])
    assert record["first_step_s"] > 0 and len(record["next_steps_s"]) == 2

    def nan_run(command, **kw):
        assert kw["env"]["TORCHINDUCTOR_CACHE_DIR"] == "CACHE" and "--no-child" in command
        assert "--blocks" in command        # the compile the caller asked to time
        return subprocess.CompletedProcess(command, 0, '{"first_step_s": 30.0, "next_steps_s": '
                                                       '[0.1, 0.1], "losses": [2.3, NaN, 2.2]}', "")
    monkeypatch.setattr(bench.subprocess, "run", nan_run)
    args = bench.argparse.Namespace(data_dir="", dataset="mnist", model="lenetspp", batch_size=128,
                                    precision="bf16", blocks=True)
    with pytest.raises(SystemExit) as stop:
        bench.timed(args, "CACHE", child=False)
    assert str(stop.value.code).startswith("error: a compile run's loss is not finite")
