"""inductor's vector-ISA checks, run ahead in a child process while the parent traces the model.

Before it generates its first CPU kernel, inductor checks which vector instruction sets (AMX,
AVX-512 with VNNI, AVX-512, AVX2) the C++ compiler can build and load: ten small C++ builds and
as many loads in child interpreters, one after another, about 13 s on the 2-core Xeon with AMX.
It keeps the results in its cache folder, so only the first compile on a machine pays them
(docs/performance.md). They need nothing from the model, so `start()` runs the same checks in a
child process while the parent spends its first seconds of compiling in Python (tracing the
model, building the joint graph): a cold compile took 30.0 s instead of 38.2 (medians of 5).

The two never check the same set twice: inductor guards each check with a file lock and keeps
its result in the cache folder, so whichever comes second waits for the lock and reads the
result. The child takes the sets widest-last, the parent widest-first, so once the parent
arrives they share what is left. The parent's checks decide as they always do; the child only
makes them faster, and a child that fails changes nothing.
"""
from __future__ import annotations

import platform
import subprocess
import sys


def start() -> subprocess.Popen | None:
    """Start the checks in a child process on an x86-64 Linux machine (where inductor runs them);
    None elsewhere or if it cannot start. The child's output goes nowhere: it has nothing to say
    that the parent's own checks would not."""
    if sys.platform != "linux" or platform.machine() != "x86_64" or not sys.executable:
        return None     # (an embedded interpreter may have no executable to start)
    try:
        return subprocess.Popen([sys.executable, "-m", __name__], stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except OSError:
        return None


def check_all() -> list[str]:
    """Run inductor's check of every vector ISA this CPU has, narrowest first; the names of those
    that passed."""
    from torch._inductor import cpu_vec_isa

    flags = cpu_vec_isa.x86_isa_checker()
    return [str(isa) for isa in reversed(cpu_vec_isa.supported_vec_isa_list)
            if all(flag in flags for flag in str(isa).split()) and isa]


if __name__ == "__main__":
    check_all()
