"""centerloss/cpu.py: OpenMP's wait policy and the thread count, set before torch loads."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from support.data import make_dataset
from support.runs import cli_flags, tiny_config

from centerloss.device import cpu

ROOT = Path(__file__).resolve().parents[2]
OMP = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS")

# A fresh interpreter: prepare(), then torch, then what torch and the environment say.
PROBE = """
import os, sys
from pathlib import Path
from centerloss.device import cpu
cpu.prepare(Path(sys.argv[1]))
import torch
print(os.environ.get("OMP_WAIT_POLICY"), os.environ.get("OMP_NUM_THREADS"), torch.get_num_threads(),
      os.environ.get("GOMP_SPINCOUNT"))
print(cpu.describe())
"""


def probe(cgroup: Path, **env: str) -> list[str]:
    clean = {k: v for k, v in os.environ.items() if k not in OMP}
    result = subprocess.run([sys.executable, "-c", PROBE, str(cgroup)], capture_output=True, text=True,
                            env={**clean, "PYTHONPATH": str(ROOT), **env}, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_prepare_chooses_a_short_spin_and_keeps_the_cores(tmp_path):
    values, described = probe(tmp_path)          # an empty folder: no CPU limit
    cpus = len(os.sched_getaffinity(0))
    policy, num_threads, torch_threads, spin = values.split()
    assert (policy, num_threads, spin) == ("PASSIVE", "None", "3000") and 1 <= int(torch_threads) <= cpus
    assert described.endswith(", spin 3000 then wait") and "(" not in described


@pytest.mark.parametrize("env, expected", [
    ({"OMP_WAIT_POLICY": "ACTIVE"}, "active wait (OMP_WAIT_POLICY)"),
    ({"GOMP_SPINCOUNT": "1000"}, "spin 1000 then wait (GOMP_SPINCOUNT)"),
    ({"OMP_NUM_THREADS": "1"}, "1 thread (OMP_NUM_THREADS), spin 3000 then wait"),
])
def test_a_users_own_openmp_settings_are_kept(tmp_path, env, expected):
    values, described = probe(tmp_path, **env)
    assert described.endswith(expected), described
    policy, _, _, spin = values.split()
    if "GOMP_SPINCOUNT" in env:
        assert policy == "None"      # no wait policy on top of the user's spin count
    if "OMP_WAIT_POLICY" in env:
        assert spin == "None"        # no spin count on top of the user's policy


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs 2 CPUs to see a limit below them")
def test_a_container_cpu_limit_caps_the_threads(tmp_path):
    (tmp_path / "cpu.max").write_text("100000 100000\n")         # one CPU's worth of time
    values, described = probe(tmp_path)
    assert values.split() == ["PASSIVE", "1", "1", "3000"]
    assert described == "1 thread, spin 3000 then wait"


@pytest.mark.parametrize("files, limit", [
    ({"cpu.max": "max 100000\n"}, None),
    ({"cpu.max": "250000 100000\n"}, 2.5),
    ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
    ({"cpu/cpu.cfs_quota_us": "50000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 0.5),
    ({"cpu.max": "garbage\n"}, None),
])
def test_cgroup_cpu_limit(tmp_path, files, limit):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert cpu.cgroup_cpu_limit(tmp_path) == limit
    if limit is not None:
        assert cpu.usable_cpus(tmp_path) == min(len(os.sched_getaffinity(0)), -(-limit // 1))


def test_cl_train_says_what_it_chose_in_its_start_line(tmp_path):
    cfg = tiny_config(make_dataset(tmp_path / "data", n_train=32, n_test=16), epochs=1)
    clean = {k: v for k, v in os.environ.items() if k not in OMP}
    result = subprocess.run([sys.executable, "-m", "cli", "train", *cli_flags(cfg), "--out",
                             str(tmp_path / "run")], capture_output=True, text=True,
                            env={**clean, "PYTHONPATH": str(ROOT)}, timeout=300)
    assert result.returncode == 0, result.stderr
    start = result.stdout.splitlines()[0]
    assert start.startswith("cl train: ") and ", cpu fp32, " in start and start.endswith(" spin 3000 then wait")


@pytest.mark.parametrize("flags, expected", [
    ("fpu avx2 avx512f avx512_bf16 avx512bw", "avx2 avx512f avx512_bf16, no amx_tile"),
    ("fpu avx2 avx512f avx512_bf16 amx_tile amx_bf16", "avx2 avx512f avx512_bf16 amx_tile"),
    ("fpu sse4_2", "none of avx2 avx512f avx512_bf16 amx_tile"),
])
def test_summary_names_the_model_and_the_kernel_flags(tmp_path, flags, expected):
    info = tmp_path / "cpuinfo"
    info.write_text(f"processor\t: 0\nmodel name\t: Some CPU 9000\nflags\t\t: {flags}\n\n"
                    f"processor\t: 1\nmodel name\t: Some CPU 9000\nflags\t\t: {flags}\n")
    assert cpu.model_and_flags(info) == ("Some CPU 9000", set(flags.split()))
    assert cpu.summary(info) == f"Some CPU 9000, {cpu.usable_cpus()} cores: {expected}"


def test_training_keeps_freed_blocks_for_the_next_step(monkeypatch):
    """keep_freed_blocks asks glibc for a fixed 32 MiB mmap threshold and a 1 GiB trim threshold
    (both, in that order), and says whether glibc took them; without glibc it does nothing."""
    calls = []

    def mallopt(param, value):
        calls.append((param, value))
        return 1

    monkeypatch.setattr(cpu, "_glibc", lambda name: mallopt if name == "mallopt" else None)
    assert cpu.keep_freed_blocks()
    assert calls == [(cpu.M_MMAP_THRESHOLD, 32 << 20), (cpu.M_TRIM_THRESHOLD, 1 << 30)]
    monkeypatch.setattr(cpu, "_glibc", lambda name: lambda param, value: 0)
    assert not cpu.keep_freed_blocks()        # glibc refused: said so
    monkeypatch.setattr(cpu, "_glibc", lambda name: None)
    assert not cpu.keep_freed_blocks()        # not glibc


def test_glibc_takes_the_settings_it_is_given():
    if cpu._glibc("mallopt") is None:
        pytest.skip("not glibc")
    assert cpu.keep_freed_blocks()           # 32 MiB is within glibc's limit for the threshold
