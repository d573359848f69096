"""The CPU: its model and the flags that decide torch's kernels; threads and OpenMP's wait policy,
chosen once, before torch is imported.

torch's CPU kernels (its own and oneDNN's) run on OpenMP, which is libgomp in the pip wheels.
Between two parallel regions libgomp's idle threads spin (300,000 turns, about 3 ms, by default)
before they sleep. Beside another busy process, the spinning thread holds a core while its partner,
which still has work, waits for a time slice, and every region waits for the slowest thread: the
seed net trained at 0.07x its quiet rate beside one busy Python loop on 2 cores. Sleeping at once
(OMP_WAIT_POLICY=PASSIVE) fixes that, but then every one of a step's few hundred parallel regions
first wakes its threads: a compiled LeNets++ step took 10-15% longer than with spinning. cl
therefore lets a thread spin 3,000 turns (about 30 us, enough to bridge the gap between two kernels
of a step) and then sleep: on the 2-core AMX Xeon the seed net trained 20% faster than with passive
waits when quiet and 4% slower beside a busy loop (0.41x of quiet, against passive's 0.51x and the
default spin's 0.07x; bench/busy.py). OMP_WAIT_POLICY=PASSIVE is set too, for OpenMP runtimes
that do not read GOMP_SPINCOUNT (libgomp takes the spin count over the policy).

libgomp reads its variables once, when torch loads it, so `prepare()` must run before the first
`import torch`; this module therefore imports torch only inside `describe()`. A user's own
OMP_NUM_THREADS, OMP_WAIT_POLICY or GOMP_SPINCOUNT is always kept."""
from __future__ import annotations

import ctypes
import ctypes.util
import functools
import math
import os
import sys
from pathlib import Path

CGROUP = Path("/sys/fs/cgroup")
CPUINFO = Path("/proc/cpuinfo")
# The flags that pick torch's CPU kernels: AVX2 or AVX-512 code, and whether bf16 matrix work is
# native (AVX512-BF16 dot products, AMX tiles) or emulated, which decides if bf16 pays.
KERNEL_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_tile")
WAIT_VARIABLES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
SPIN_TURNS = "3000"     # libgomp's turns of spinning before a waiting thread sleeps (see above)

# What prepare() set, so that describe() can tell cl's choices from the user's.
_chosen: dict[str, str] = {}


def cgroup_cpu_limit(root: Path = CGROUP) -> float | None:
    """CPUs' worth of time this container may use (cgroup v2 cpu.max, else v1's CFS quota), or
    None without a limit. A container limited to 2 CPUs on a 64-core host still sees 64 cores, and
    64 threads time-sliced onto 2 CPUs stall each other at every barrier."""
    try:
        quota, period = (root / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        return quota / period if quota > 0 and period > 0 else None
    except (OSError, ValueError):
        return None


def usable_cpus(root: Path = CGROUP) -> int:
    """CPUs this process may run on: its affinity mask, capped by the container's CPU limit."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:          # not on Linux
        cpus = os.cpu_count() or 1
    limit = cgroup_cpu_limit(root)
    return max(1, min(cpus, math.ceil(limit))) if limit else cpus


def prepare(root: Path = CGROUP) -> None:
    """Set OpenMP's wait to a short spin, then sleep, and, in a container whose CPU limit is below
    its visible cores, the thread count to that limit; each only where the user set nothing. Does
    nothing once torch is imported: libgomp would no longer read the variables."""
    if "torch" in sys.modules:
        return
    if not any(name in os.environ for name in WAIT_VARIABLES):
        os.environ["GOMP_SPINCOUNT"] = _chosen["GOMP_SPINCOUNT"] = SPIN_TURNS
        os.environ["OMP_WAIT_POLICY"] = _chosen["OMP_WAIT_POLICY"] = "PASSIVE"
    if "OMP_NUM_THREADS" not in os.environ:
        cpus = usable_cpus(root)
        if cpus < (os.cpu_count() or cpus):
            os.environ["OMP_NUM_THREADS"] = _chosen["OMP_NUM_THREADS"] = str(cpus)


@functools.lru_cache(maxsize=None)
def _glibc(name: str):
    """glibc's function `name` (malloc_trim, mallopt), or None where the C library is not glibc."""
    try:
        return getattr(ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6"), name)
    except (OSError, AttributeError):
        return None


M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3     # glibc's malloc.h
KEEP_BLOCKS_BELOW = 32 << 20                    # the largest mmap threshold glibc accepts
KEEP_FREE_TOP = 1 << 30


def keep_freed_blocks() -> bool:
    """Let glibc keep a training step's freed activations for the next step. A step allocates and
    frees tens of megabytes in blocks of one to a few: glibc serves a block above its (sliding)
    mmap threshold with fresh pages, and hands a free heap top above its trim threshold back to
    the system, so every step faulted its activations in again (a compiled LeNets++ step on the
    AMX Xeon: 730,000 page faults in 63 steps, against 200,000 with these fixed thresholds, and
    5-10% faster; docs/performance.md). Blocks under 32 MiB then come from the heap, which keeps
    up to 1 GiB of free top; the evaluation's explicit trims (release_free_memory) still return
    what it frees. True where glibc took both settings."""
    mallopt = _glibc("mallopt")
    return mallopt is not None and bool(mallopt(M_MMAP_THRESHOLD, KEEP_BLOCKS_BELOW)) \
        and bool(mallopt(M_TRIM_THRESHOLD, KEEP_FREE_TOP))


def release_free_memory() -> None:
    """Hand the C heap's free pages back to the system. Evaluating a classifier of 20,000
    classes allocates and frees 10 MB of logits a batch; glibc keeps such blocks in its heap,
    the small tensors kept between them fragment it, and `cl eval` grew to 2.7 GB on a folder of
    20,000 identities. Trimmed after each batch (about a microsecond), it stays flat."""
    trim = _glibc("malloc_trim")
    if trim is not None:
        trim(0)


def describe() -> str:
    """'2 threads, spin 3000 then wait': what the CPU runs with, and which of it the user set."""
    import torch
    n = torch.get_num_threads()
    threads = f"{n} thread{'' if n == 1 else 's'}"
    if "OMP_NUM_THREADS" in os.environ and "OMP_NUM_THREADS" not in _chosen:
        threads += " (OMP_NUM_THREADS)"
    if "GOMP_SPINCOUNT" in _chosen:
        wait = f"spin {_chosen['GOMP_SPINCOUNT']} then wait"
    elif "OMP_WAIT_POLICY" in os.environ:
        wait = f"{os.environ['OMP_WAIT_POLICY'].lower()} wait"
        if "OMP_WAIT_POLICY" not in _chosen:
            wait += " (OMP_WAIT_POLICY)"
    elif "GOMP_SPINCOUNT" in os.environ:
        wait = f"spin {os.environ['GOMP_SPINCOUNT']} then wait (GOMP_SPINCOUNT)"
    else:
        wait = "spin then wait"      # libgomp's default: torch was loaded before prepare() ran
    return f"{threads}, {wait}"


def model_and_flags(cpuinfo: Path = CPUINFO) -> tuple[str, set[str]]:
    """The CPU's model name and its flags, from /proc/cpuinfo (empty where there is none)."""
    model, flags = "", set()
    try:
        for line in cpuinfo.read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and not model:
                model = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    return model, flags


def summary(cpuinfo: Path = CPUINFO) -> str:
    """'AMD EPYC, 2 cores: avx2 avx512f avx512_bf16, no amx_tile', for benchmark reports."""
    import platform
    model, flags = model_and_flags(cpuinfo)
    has = [f for f in KERNEL_FLAGS if f in flags]
    lacks = [f for f in KERNEL_FLAGS if f not in flags]
    return (f"{model or platform.processor() or platform.machine()}, {usable_cpus()} cores: "
            f"{' '.join(has) or 'none of ' + ' '.join(KERNEL_FLAGS)}"
            + (f", no {' '.join(lacks)}" if has and lacks else ""))
