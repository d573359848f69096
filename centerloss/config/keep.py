"""--keep-checkpoints: how many epoch checkpoints a run keeps in RUN/epochs/.

Every epoch's checkpoint is a full copy of the model (3.2 MB for LeNets++, 17 MB for the seed net
at 64 px, 45 MB for ResNet-18): kept for every epoch, a 60-epoch run of the seed net at 64 px took
about 1 GB. The default keeps the latest few, so a run's disk use is bounded whatever its
length; model.safetensors (the latest) is always there, and the feature snapshots that plots
read (small) stay for every epoch."""
from __future__ import annotations

from centerloss.errors import OptionError

DEFAULT = "3"       # with model.safetensors, at most 4 copies of the model on disk
WORDS = ("last", "all")


def keep_count(value: str | int) -> int | None:
    """How many of the latest epoch checkpoints to keep: 1 for 'last', None (all) for 'all',
    N for 'N' (N >= 1); an OptionError naming the flag otherwise."""
    text = str(value).strip().lower()
    if text == "last":
        return 1
    if text == "all":
        return None
    if text.isdecimal() and 1 <= int(text) <= 100_000:
        return int(text)
    raise OptionError(f"--keep-checkpoints must be last, all or a number of epochs from 1 to "
                      f"100000, got {value!r}")


def describe(value: str | int) -> str:
    """The policy in words, for the start line: 'keeping 3 epoch checkpoints'."""
    count = keep_count(value)
    if count is None:
        return "keeping every epoch's checkpoint"
    return "keeping the last epoch's checkpoint" if count == 1 else f"keeping {count} epoch checkpoints"
