"""Whether a run trains through torch.compile: --compile or --no-compile as the user says, else
where it pays, by a rule stated here and said on the start line.

Compiling fuses the elementwise work around the convolutions (BatchNorm, PReLU, pooling's
bookkeeping) into a few generated loops, but costs tens of seconds before the first step. It pays
when the time it saves over the run exceeds that cost:

    images to train / eager images/s  x  share of a step saved  >  seconds to compile

with the figures measured for a model on a kind of device (docs/performance.md). Compiling costs
~30 s the first time and ~3 s once inductor's cache holds the same graphs from an earlier run
(device/compile_cache.py says whether it does). Where a figure is missing, the rule keeps the
eager model: it never guesses that compiling pays. It reads the config, the device, the CPU's
flags and whether the cache holds the model, never a timing. The same command can therefore
compile where an earlier one did not, once a compiled run filled the cache; RUN/config.yaml
records the choice, so that a run repeated from it trains the same way, bit for bit."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from centerloss.device.accel import has_cpp_compiler
from centerloss.device.runtime import Runtime, native_bf16

# Measured on the 2-core Xeon with AMX (amx_tile, amx_bf16, avx512_bf16), torch 2.14.1, bf16,
# batch 128, 2 threads, quiet (bench/bench.py, 2026-12-06/07, docs/performance.md): LeNets++
# eager 1,087 images/s since PReLU is a lerp (1,025-1,067 before), compiled 1,646-1,689 since the
# pooling's NHWC slices (1,519 before), after 30.9 s of compiling with an empty inductor cache.
# A compiled step takes 1,087 / 1,668 = 65% of an eager one.
COMPILE_SECONDS = 30.0
# The same compile once inductor's cache holds the graphs (from an earlier run): the first
# compiled step took 2.5 s instead of 38 (2026-12-07).
CACHED_COMPILE_SECONDS = 3.0
EAGER_IMAGES_PER_S_PER_THREAD = {"lenetspp": 544.0}   # bf16, AMX: 1,087 on 2 threads
SAVED_SHARE = {"lenetspp": 0.35}


@dataclass(frozen=True)
class CompileChoice:
    on: bool
    why: str        # for the start line: "compiled (auto: ...)", "eager (--no-compile)"

    @property
    def note(self) -> str:
        return f"{'compiled' if self.on else 'eager'} ({self.why})"


def decide(flag: bool | None, runtime: Runtime, model: str, images: int,
           threads: int | None = None, compiler: bool | None = None,
           amx: bool | None = None, cached: Callable[[], bool] = lambda: False) -> CompileChoice:
    """--compile (True) or --no-compile (False) as given; for None, the rule above. `images` is
    what this process will train (epochs left x its share of the training split); `threads`,
    `compiler` and `amx` default to this machine's (tests pass their own); `cached` says whether
    inductor's cache holds the model's graphs, asked only where the answer matters."""
    if flag is not None:
        return CompileChoice(flag, "--compile" if flag else "--no-compile")
    device = runtime.device
    if device.type != "cpu":
        return CompileChoice(False, f"auto: not yet measured to pay on {device.type}; --compile "
                                    f"forces it")
    if runtime.precision != "bf16" or not native_bf16(device):
        return CompileChoice(False, "auto: measured to pay only in bf16 on a CPU with AMX")
    if not (amx if amx is not None else torch.cpu._is_amx_tile_supported()):
        # the Zen 5 EPYC (avx512_bf16, no AMX): LeNets++ 266 against 239 images/s, within its
        # noise, after 50-70 s of compiling (docs/performance.md)
        return CompileChoice(False, "auto: measured to pay only on a CPU with AMX")
    if model not in SAVED_SHARE:
        return CompileChoice(False, f"auto: not measured to pay for {model}; --compile forces it")
    if not (has_cpp_compiler() if compiler is None else compiler):
        return CompileChoice(False, "auto: no C++ compiler (g++ or clang++) for inductor")
    threads = threads or torch.get_num_threads()
    saved = images / (EAGER_IMAGES_PER_S_PER_THREAD[model] * threads) * SAVED_SHARE[model]
    gain = f"{saved:.0f}" if saved >= 10 else f"{saved:.1f}"
    if saved <= CACHED_COMPILE_SECONDS:
        return CompileChoice(False, f"auto: would save ~{gain} s over {images:,} images, less "
                                    f"than the ~{CACHED_COMPILE_SECONDS:.0f} s compiling takes "
                                    f"even from inductor's cache")
    if cached():
        cost, whose = CACHED_COMPILE_SECONDS, ", inductor's cache holds this model"
    else:
        cost, whose = COMPILE_SECONDS, ""
    if saved > cost:
        return CompileChoice(True, f"auto: saves ~{gain} s over {images:,} images, "
                                   f"compiling takes ~{cost:.0f} s{whose}")
    return CompileChoice(False, f"auto: would save ~{gain} s over {images:,} images, "
                                f"less than the ~{cost:.0f} s compiling takes")
