"""The checkpoint policy (--keep-checkpoints): which epoch checkpoints of a run stay on disk.

Only cl's own epoch files are ever removed: names that runfolder.EPOCH_FILE matches, in the run's
own epochs/ folder, plain files, never a symbolic link and never through one."""
from __future__ import annotations

from pathlib import Path

from centerloss.errors import WriteError
from centerloss.store.runfolder import EPOCH_FILE, EPOCHS, own_files

# what a safetensors header adds to the tensors' bytes, per tensor and for the metadata (the
# config, the class names, the metrics): generous, so that the size stated is an upper bound
HEADER_PER_TENSOR = 160
HEADER_BASE = 16_384


def prune(run: Path | str, keep: int | None) -> list[Path]:
    """Remove all but the `keep` latest epoch checkpoints of run (None: keep all); the paths
    removed. model.safetensors and the feature snapshots are never touched."""
    if keep is None:
        return []
    ours = {int(path.stem.split("_", 1)[1]): path for path in own_files(Path(run) / EPOCHS, EPOCH_FILE)}
    removed = [ours[epoch] for epoch in sorted(ours)[:-keep]]
    for path in removed:
        try:
            path.unlink(missing_ok=True)
        except OSError as e:
            raise WriteError(e.errno, e.strerror or str(e), str(path)) from e
    return removed


def checkpoint_bytes(tensor_bytes: int, tensors: int, classes: int) -> int:
    """An upper bound of a checkpoint's size on disk from its tensors' bytes and count."""
    return tensor_bytes + HEADER_PER_TENSOR * tensors + HEADER_BASE + 64 * classes


def disk_bound(keep: int | None, each: int) -> str:
    """What the checkpoints of a run take at most, in words: '13 MB at most' or '3.2 MB an epoch'."""
    if keep is None:
        return f"{megabytes(each)} an epoch"
    return f"{megabytes((keep + 1) * each)} at most, with model.safetensors"


def megabytes(n: int) -> str:
    mb = n / 1e6
    return f"{mb:.2g} MB" if mb < 10 else f"{mb:,.0f} MB"
