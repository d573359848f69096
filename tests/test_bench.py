"""bench/bench.py runs end to end on tiny data and its figures are consistent (no timing thresholds)."""
import importlib.util
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from idxdata import make_dataset  # noqa: E402

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
    assert re.search(r"^  CPU .+, \d+ cores: .*avx2.*; \d+ threads?, ", out, re.M) or \
        re.search(r"^  CPU .+, \d+ cores: none of ", out, re.M)
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
    runs = re.findall(r"^  cl +(quiet|busy) +([\d,]+) images/s .*\(fp32, (\d+) threads?, passive wait\)$",
                      out, re.M)
    assert sorted(r[0] for r in runs) == ["busy", "quiet"]
    quiet, busy_rate = (float(r[1].replace(",", "")) for r in sorted(runs, key=lambda r: r[0] != "quiet"))
    row = re.search(r"^cl +([\d,]+) +([\d,]+) +([\d.]+)x", out, re.M)
    assert row and float(row[1].replace(",", "")) == round(quiet)
    assert abs(float(row[3]) - busy_rate / quiet) < 0.01 + 2 / quiet * busy_rate / quiet
