"""`cl eval --pairs FILE`: verification on a list of image pairs, through a checkpoint.

Two formats, told apart by the first line:

    path_a  path_b  same          one pair a line; tab-, comma- or space-separated; same is
                                  1/0, true/false, same/different, yes/no or match/mismatch;
                                  relative paths start at --images-dir (default: the file's folder)

    10  300                       LFW's pairs.txt: a header of sets and pairs per set (or one
    name  n1  n2                  count, as in pairsDevTest.txt), then matching pairs
    name1  n1  name2  n2          and non-matching ones; images at IMAGES/name/name_000n.jpg,
                                  IMAGES being --images-dir or the first of lfw_funneled, lfw,
                                  lfw-deepfunneled beside the file (torchvision's lfw-py layout)

Images are decoded like an image folder's (folder.decode) at the checkpoint's input size and
channels, and normalised with the statistics of its training data."""
from __future__ import annotations

import itertools
import re
from array import array
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch

from centerloss.data.folder import decode_all, default_workers
from centerloss.data.registry import normalization_of
from centerloss.data.types import Split
from centerloss.device.runtime import Runtime
from centerloss.errors import CheckpointError, DataError, PathError
from centerloss.evaluation.inference import infer, load_model
from centerloss.evaluation.verification import Verification, pair_scores, verify_scores
from centerloss.store.files import read_lines

YES = {"1", "true", "same", "yes", "match", "matched", "genuine"}
NO = {"0", "false", "different", "diff", "no", "mismatch", "mismatched", "impostor"}
LFW_IMAGE_DIRS = ("lfw_funneled", "lfw", "lfw-deepfunneled")


MAX_PAIRS = 20_000_000      # IJB-C's 1:1 protocol has 15.6 million; 5 bytes a pair are kept
MAX_LINE = 1 << 16          # bytes of one line of a pairs file
SCORE_CHUNK = 1 << 18       # pairs scored at a time: two [chunk, D] feature gathers


@dataclass
class PairList:
    """Pairs as indices into the list of their distinct images: a file of millions of pairs of
    a few thousand images costs 5 bytes a pair, not two paths a pair."""
    images: list[Path]          # each distinct image once, in order of first use
    a: torch.Tensor             # int32 [P] index into images
    b: torch.Tensor             # int32 [P]
    same: torch.Tensor          # bool [P]

    def __len__(self) -> int:
        return self.a.shape[0]

    @property
    def paths_a(self) -> list[Path]:
        return [self.images[i] for i in self.a.tolist()]

    @property
    def paths_b(self) -> list[Path]:
        return [self.images[i] for i in self.b.tolist()]


def _fields(line: str) -> list[str]:
    sep = "\t" if "\t" in line else "," if "," in line else None
    return [f.strip() for f in line.split(sep)]


def _header(f: list[str], root: Path) -> bool:
    """Whether a first line names the columns ("path_a,path_b,same"): a label that is not a
    number or a boolean, beside paths that are not files."""
    return (f[2].lower() not in {"0", "1", "true", "false"}
            and not (root / f[0]).is_file() and not (root / f[1]).is_file())


def _lfw_root(pairs_file: Path, images_dir: Path | None) -> Path:
    if images_dir is not None:
        return images_dir
    for name in LFW_IMAGE_DIRS:
        if (pairs_file.parent / name).is_dir():
            return pairs_file.parent / name
    return pairs_file.parent


def _lfw_path(root: Path, name: str, number: str) -> Path:
    return root / name / f"{name}_{int(number):04d}.jpg"


def _count(field: str) -> bool:
    # ASCII digits only: str.isdigit() also accepts "²" and other digits int() refuses
    return field.isascii() and field.isdigit()


def _lines(pairs_file: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of the file's lines that hold something, streamed: UTF-8 (a leading
    byte-order mark dropped, as editors on Windows write one), or a DataError naming the line."""
    for no, raw in enumerate(read_lines(pairs_file, MAX_LINE, "pairs file"), 1):
        try:
            line = raw.decode("utf-8-sig" if no == 1 else "utf-8").strip()
        except UnicodeDecodeError as e:
            raise DataError(f"{pairs_file}:{no}: not UTF-8 text (byte {raw[e.start]:#04x} at "
                            f"column {e.start + 1}); save the file as UTF-8") from None
        if line and not line.startswith("#"):
            yield no, line


def read_pairs(pairs_file: str | Path, images_dir: str | Path | None = None) -> PairList:
    """The pairs of a file in either format, read a line at a time (at most MAX_PAIRS), or a
    DataError naming the line at fault."""
    pairs_file = Path(pairs_file)
    images = Path(images_dir) if images_dir else None
    try:
        lines = _lines(pairs_file)
        first = next(lines, None)
    except PathError as e:
        raise DataError(f"{pairs_file}: cannot read the pairs file ({str(e).rsplit(': ', 1)[-1]})") from e
    if first is None:
        raise DataError(f"{pairs_file}: no pairs in the file")
    lfw = re.fullmatch(r"\d+(\s+\d+)?", first[1], re.ASCII) is not None
    root = _lfw_root(pairs_file, images) if lfw else (images or pairs_file.parent)
    index: dict[Path, int] = {}
    a, b, same = array("i"), array("i"), array("b")
    for k, (no, line) in enumerate(lines if lfw else itertools.chain([first], lines)):
        f = _fields(line)
        if lfw and len(f) == 3 and _count(f[1]) and _count(f[2]):
            pair = (_lfw_path(root, f[0], f[1]), _lfw_path(root, f[0], f[2]), True)
        elif lfw and len(f) == 4 and _count(f[1]) and _count(f[3]):
            pair = (_lfw_path(root, f[0], f[1]), _lfw_path(root, f[2], f[3]), False)
        elif not lfw and k == 0 and len(f) == 3 and _header(f, root):
            continue
        elif not lfw and len(f) == 3 and f[2].lower() in YES | NO:
            pair = (root / f[0], root / f[1], f[2].lower() in YES)
        else:
            expected = ("'name n1 n2' or 'name1 n1 name2 n2' (LFW)" if lfw
                        else "'path_a path_b same' with same one of 1/0, true/false, same/different")
            raise DataError(f"{pairs_file}:{no}: expected {expected}, got {line[:80]!r}")
        if len(a) == MAX_PAIRS:
            raise DataError(f"{pairs_file}: more than {MAX_PAIRS:,} pairs, the most cl verifies "
                            f"in one run; split the file")
        a.append(index.setdefault(pair[0], len(index)))
        b.append(index.setdefault(pair[1], len(index)))
        same.append(pair[2])
    if not a:
        raise DataError(f"{pairs_file}: no pairs in the file")
    missing = [p for p in index if not p.is_file()]
    if missing:
        raise DataError(f"{pairs_file}: {len(missing)} image(s) not found, first {missing[0]}; "
                        f"pass --images-dir with the folder the paths start from")
    return PairList(list(index), torch.frombuffer(a, dtype=torch.int32),
                    torch.frombuffer(b, dtype=torch.int32), torch.frombuffer(same, dtype=torch.bool))


def evaluate_pairs(path: Path | str, pairs_file: Path | str, images_dir: Path | str | None = None,
                   metric: str = "cosine", folds: int = 10, device: str = "auto",
                   precision: str = "auto", workers: int = -1, runtime: Runtime | None = None
                   ) -> tuple[dict, Verification]:
    """Every verification figure of a checkpoint on the pairs of a file; runtime, when given,
    replaces device and precision."""
    runtime = runtime or Runtime.resolve(device, precision)
    dev = runtime.device
    ckpt, model = load_model(path, runtime)
    pairs = read_pairs(pairs_file, images_dir)
    channels, size, width = ckpt.input_shape
    if size != width:
        raise CheckpointError(f"{path}: input {size}x{width} is not square; "
                                      f"--pairs decodes square images")
    unique = pairs.images
    images = decode_all([str(p) for p in unique], size, channels,
                        default_workers() if workers < 0 else workers)
    split = Split(images.to(dev), torch.zeros(len(unique), dtype=torch.int64, device=dev))
    mean, std = normalization_of(ckpt)
    features, _ = infer(model, split, mean, std, runtime)
    features = features.cpu()
    scores = torch.cat([pair_scores(features[pairs.a[s:s + SCORE_CHUNK].long()],
                                    features[pairs.b[s:s + SCORE_CHUNK].long()], metric)
                        for s in range(0, len(pairs), SCORE_CHUNK)])
    result = verify_scores(scores, pairs.same, folds)
    report = {"checkpoint": str(path), "epoch": ckpt.epoch, "model": ckpt.config.model,
              "pairs_file": str(pairs_file), "images": len(unique), "metric": metric,
              "verification": result.summary}
    return report, result
