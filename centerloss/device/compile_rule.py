"""Whether a run trains through torch.compile: --compile or --no-compile as the user says, else
where it pays, by a rule stated here and said on the start line.

Compiling fuses the elementwise work around the convolutions (BatchNorm, PReLU, pooling's
bookkeeping) into a few generated loops, but costs tens of seconds before the first step. It pays
when the time it saves over the run exceeds that cost:

    images to train / eager images/s  x  share of a step saved  >  seconds to compile

with the figures measured for a model on a kind of device (docs/performance.md). Compiling costs
~30 s the first time and ~3 s once inductor's cache holds the same graphs from an earlier run
(device/compile_cache.py says whether it does). Compiling only the BatchNorm + PReLU blocks
(model/blocks.py) saves less a step for ~18 s: of the three ways (eager, in blocks, whole), the
rule takes the one that leaves the run shortest: on the AMX Xeon, since the eager model pools
before its PReLUs (nets.PoolFirst), which a block cannot, runs of up to three epochs of MNIST stay
eager and longer ones compile whole; blocks no longer pay there, and `compile: blocks` forces
them. Where a figure is missing, the rule keeps the
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
# batch 128, 2 threads, quiet (docs/performance.md). Alternating in one process (cl's Step and
# train_step, 2026-12-07 evening, a bf16 ceiling of about 2,300-2,500 GFLOP/s), a step took 87.5
# ms eager (1,463 images/s) since PReLU's backward works on the bits and small images' convs
# take their weight gradient over tiles (100.8 in the day's rounds, before), 67.1 ms compiled
# whole, after ~30 s of compiling with an empty inductor cache. Since the compiled step takes the
# tiles too (2026-12-07, late morning, in a slower state: eager 93.6 and 93.4 ms, whole 70.5 and
# 67.2), a compiled step took 74% of an eager one; since the eager model pools before its PReLUs
# (noon: eager 84.8 and 84.5 ms, 1,510 images/s, whole 65.9 and 69.8), 80%.
COMPILE_SECONDS = 30.0
# The same compile once inductor's cache holds the graphs (from an earlier run): the first
# compiled step took 2.5 s instead of 38 (2026-12-07).
CACHED_COMPILE_SECONDS = 3.0
EAGER_IMAGES_PER_S_PER_THREAD = {"lenetspp": 756.0}   # bf16, AMX: 1,512 on 2 threads
SAVED_SHARE = {"lenetspp": 0.20}
# Compiled in blocks (model/blocks.py: each BatchNorm + PReLU, three graphs), the same machine,
# 2026-12-07: the first step 16.2-19.1 s with an empty inductor cache (bench/compile_time.py
# --blocks, set-up included: 18.7-21.6 s, against 37.5-39.0 s whole in the same slower state of
# the machine, where the whole compile usually takes 30.5 s); a step at batch 128 70.9 ms in the
# alternating rounds above (its convolutions run eagerly, tiles included); 77.8 and 76.4 ms in
# the late morning's: 0.17 and 0.18 of a step saved; 75.3 and 76.2 at noon, against the eager
# model that pools first (a block holds BatchNorm and PReLU together and cannot): 0.11 and 0.10.
# Blocks then never beat both eager and whole on 2 threads.
BLOCKS_COMPILE_SECONDS = 18.0
BLOCKS_SAVED_SHARE = {"lenetspp": 0.10}


@dataclass(frozen=True)
class CompileChoice:
    on: bool
    why: str        # for the start line: "compiled (auto: ...)", "eager (--no-compile)"
    blocks: bool = False    # only the BatchNorm + activation blocks (model/blocks.py)

    @property
    def value(self) -> bool | str:
        """As Config.compile and config.yaml hold it."""
        return "blocks" if self.blocks else self.on

    @property
    def note(self) -> str:
        return f"{'compiled in blocks' if self.blocks else 'compiled' if self.on else 'eager'} ({self.why})"


def _seconds(s: float) -> str:
    return f"{s:.0f}" if s >= 10 else f"{s:.1f}"


def decide(flag: bool | str | None, runtime: Runtime, model: str, images: int,
           threads: int | None = None, compiler: bool | None = None,
           amx: bool | None = None, cached: Callable[[bool], bool] = lambda blocks: False,
           blocks_ok: bool = True) -> CompileChoice:
    """--compile (True), `compile: blocks` or --no-compile (False) as given; for None, the rule
    above. `images` is what this process will train (epochs left x its share of the training
    split); `threads`, `compiler` and `amx` default to this machine's (tests pass their own);
    `cached(blocks)` says whether inductor's cache holds the model's graphs (compiled whole, or in
    blocks), asked only where the answer matters; blocks_ok: whether this run may compile in
    blocks (not under DistributedDataParallel)."""
    if flag is not None:
        if flag == "blocks":
            return CompileChoice(True, "compile: blocks", blocks=True)
        return CompileChoice(bool(flag), "--compile" if flag else "--no-compile")
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
    eager = images / (EAGER_IMAGES_PER_S_PER_THREAD[model] * threads)
    saved = eager * SAVED_SHARE[model]
    over = f"over {images:,} images"
    if saved <= CACHED_COMPILE_SECONDS:
        return CompileChoice(False, f"auto: would save ~{_seconds(saved)} s {over}, less than the "
                                    f"~{CACHED_COMPILE_SECONDS:.0f} s compiling takes even from "
                                    f"inductor's cache")
    if cached(False):
        return CompileChoice(True, f"auto: saves ~{_seconds(saved)} s {over}, compiling takes "
                                   f"~{CACHED_COMPILE_SECONDS:.0f} s, inductor's cache holds this model")
    in_blocks = eager * BLOCKS_SAVED_SHARE.get(model, 0.0) if blocks_ok else 0.0
    blocks_cost = CACHED_COMPILE_SECONDS if in_blocks and cached(True) else BLOCKS_COMPILE_SECONDS
    held = ", inductor's cache holds them" if blocks_cost == CACHED_COMPILE_SECONDS else ""
    if saved - COMPILE_SECONDS >= in_blocks - blocks_cost and saved > COMPILE_SECONDS:
        return CompileChoice(True, f"auto: saves ~{_seconds(saved)} s {over}, compiling takes "
                                   f"~{COMPILE_SECONDS:.0f} s")
    if in_blocks > blocks_cost:
        return CompileChoice(True, f"auto: saves ~{_seconds(in_blocks)} s {over}, compiling its "
                                   f"BatchNorm + PReLU blocks takes ~{blocks_cost:.0f} s{held}; the "
                                   f"whole model would save ~{_seconds(saved)} s after ~"
                                   f"{COMPILE_SECONDS:.0f} s", blocks=True)
    return CompileChoice(False, f"auto: would save ~{_seconds(saved)} s {over}, less than the "
                                f"~{COMPILE_SECONDS:.0f} s compiling takes"
                                + (f"; ~{_seconds(in_blocks)} s in blocks, less than their ~"
                                   f"{blocks_cost:.0f} s" if in_blocks else ""))
