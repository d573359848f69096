"""Any image folder as a data set: one subfolder of images per class (or identity).

    ROOT/<class>/**/<image>                 10% of each class held out as the test split, or
    ROOT/train/<class>/..., ROOT/test/<class>/...   the split as given

Images are decoded with Pillow, converted to grayscale or RGB, resized (shorter side) to
--image-size and center-cropped square. A set whose uint8 pixels fit the memory budget is decoded
once, by DataLoader workers, into one tensor on the device, and then batched like MNIST; a larger
one stays on disk and each batch is decoded by the workers while the device trains on the last."""
from __future__ import annotations

import os
import warnings
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from PIL import Image, ImageOps

from centerloss.data.types import Dataset, Split
from centerloss.errors import DataError

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".pgm",
                  ".ppm", ".pbm"}
TEST_FRACTION = 0.1         # of each class, when the folder has no train/ and test/ of its own
DEFAULT_SIZE = 64           # --image-size 0
DECODE_CHUNK = 256          # images per worker task when decoding a whole split
STATS_SAMPLE = 4096         # images the mean and std of a streamed set are measured on
GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}


def printable(name: str | Path) -> str:
    """A file or folder name as valid UTF-8 text: bytes that are not UTF-8 (Python keeps them as
    lone surrogates) become backslash escapes, so such a name can go into JSON metadata, a CSV
    file or a message, and two different names never become one."""
    return str(name).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*")
                  if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def _class_folders(root: Path) -> dict[str, list[Path]]:
    """Class name -> its images, for every non-hidden subfolder, in name order."""
    folders = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not folders:
        raise DataError(f"{root}: no class subfolders; --dataset folder wants one subfolder of "
                        f"images per class")
    out = {}
    for d in folders:
        images = _images_in(d)
        if not images:
            raise DataError(f"{d}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in this class "
                            f"folder; add some or remove it")
        out[printable(d.name)] = images
    return out


def held_out(name: str, n: int) -> set[int]:
    """Positions (in name order) of a class's test images: a fixed share drawn with a seed made
    from the class name, so that the split never depends on --seed or on the other classes, and
    cl eval sees the same test images that training held out. A class of one image trains only."""
    if n < 2:
        return set()
    k = max(1, round(TEST_FRACTION * n))
    g = torch.Generator().manual_seed(zlib.crc32(name.encode()))
    return set(torch.randperm(n, generator=g)[:k].tolist())


def scan(root: Path) -> tuple[tuple[str, ...], list[tuple[Path, int]], list[tuple[Path, int]]]:
    """(class names, train (path, label) pairs, test pairs) of an image folder."""
    if (root / "train").is_dir() and (root / "test").is_dir():
        train = _class_folders(root / "train")
        test = _class_folders(root / "test")
        unknown = sorted(set(test) - set(train))
        if unknown:
            raise DataError(f"{root / 'test'}: classes {unknown[:3]} have no folder in {root / 'train'}")
        classes = tuple(train)
        index = {c: i for i, c in enumerate(classes)}
        return (classes, [(p, index[c]) for c, ps in train.items() for p in ps],
                [(p, index[c]) for c, ps in test.items() for p in ps])
    by_class = _class_folders(root)
    classes = tuple(by_class)
    train_items, test_items = [], []
    for label, (name, paths) in enumerate(by_class.items()):
        test_at = held_out(name, len(paths))
        for i, p in enumerate(paths):
            (test_items if i in test_at else train_items).append((p, label))
    return classes, train_items, test_items


@contextmanager
def pillow_quiet() -> Iterator[None]:
    """Pillow's warnings about a file it still decodes (odd EXIF, palette transparency) kept off
    stderr: cl says in one line what it cannot read, and nothing about what it can."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        yield


def open_image(path: str | Path) -> Image.Image:
    """Image.open, with Pillow's warning about an image past its pixel limit (a decompression
    bomb, which it would go on to decode) raised instead: the callers turn it into one line
    naming the file, and nothing reaches stderr."""
    with pillow_quiet():
        return Image.open(path)


def to_mode(im: Image.Image, mode: str) -> Image.Image:
    """im as 8-bit L or RGB. Pillow's own convert clips 16-bit and 32-bit grayscale to 0..255
    (a 16-bit PNG turns black and white); these are scaled to 0..255 instead: by 1/257 for
    16-bit integers, by 255 for floats in [0, 1], else from their own range."""
    if im.mode.startswith("I") or im.mode == "F":
        values = np.asarray(im, dtype=np.float64)
        if im.mode.startswith("I;16") or (im.mode == "I" and 255 < values.max() <= 65535
                                          and values.min() >= 0):
            values = values / 257.0
        elif im.mode == "F" and values.min() >= 0 and values.max() <= 1:
            values = values * 255.0
        elif values.min() < 0 or values.max() > 255:
            lo, hi = values.min(), values.max()
            values = (values - lo) * (255.0 / (hi - lo)) if hi > lo else values * 0
        im = Image.fromarray(np.rint(values).clip(0, 255).astype(np.uint8), "L")
    return im.convert(mode)


def decode(path: str | Path, size: int, channels: int) -> np.ndarray:
    """uint8 [size, size] (1 channel) or [size, size, 3]: shorter side resized to size, centre crop."""
    with open_image(path) as im:
        im.draft("L" if channels == 1 else "RGB", (size, size))   # JPEG: the smallest scale >= size
        return fit_image(im, size, size, channels, crop=True)


def fit_image(im: Image.Image, height: int, width: int, channels: int, crop: bool) -> np.ndarray:
    """An image at a model's input, uint8 [height, width] or [height, width, 3]: upright (a
    phone's photo stores its rotation in EXIF), 8-bit L or RGB, then centre-cropped to fill
    (crop: the image-folder loader's way) or resized. The one conversion of training, --pairs,
    cl embed --images and centerloss.load."""
    with pillow_quiet():
        im = to_mode(ImageOps.exif_transpose(im), "L" if channels == 1 else "RGB")
        if im.size != (width, height):
            im = (ImageOps.fit(im, (width, height), Image.Resampling.BILINEAR) if crop
                  else im.resize((width, height), Image.Resampling.BILINEAR))
        return np.array(im, dtype=np.uint8)     # a copy: torch takes only writable arrays


def detect_channels(paths: list[Path]) -> int:
    """1 when every one of up to 256 images spread over the set is grayscale, else 3."""
    for p in paths[::max(1, len(paths) // 256)]:
        try:
            with open_image(p) as im:
                if im.mode not in GRAY_MODES:
                    return 3
        except Exception as e:  # Pillow raises many kinds for a file that is not an image
            raise DataError(f"{p}: cannot read this image ({e})") from e
    return 1


class _Decoder(torch.utils.data.Dataset):
    """Decodes a whole batch per task: (uint8 images, "") or (empty, the error of a bad file).
    The error travels as a value because an exception raised in a worker comes back wrapped in
    a multi-line traceback, and cl reports bad input in one line."""

    def __init__(self, paths: list[str], size: int, channels: int):
        self.paths, self.size, self.channels = paths, size, channels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, indices: torch.Tensor) -> tuple[torch.Tensor, str]:
        shape = (len(indices), self.size, self.size) + ((3,) if self.channels == 3 else ())
        out = np.empty(shape, dtype=np.uint8)
        for k, i in enumerate(indices.tolist()):
            try:
                out[k] = decode(self.paths[i], self.size, self.channels)
            except Exception as e:  # Pillow raises many kinds for a file that is not an image
                return torch.empty(0, dtype=torch.uint8), f"{self.paths[i]}: cannot read this image ({e})"
        return torch.from_numpy(out), ""


def decode_all(paths: list[str], size: int, channels: int, workers: int) -> torch.Tensor:
    """uint8 [N, size, size(, 3)] of every path, written in place: no second copy of the set."""
    out = torch.empty((len(paths), size, size) + ((3,) if channels == 3 else ()), dtype=torch.uint8)
    chunks = list(torch.arange(len(paths)).split(DECODE_CHUNK))
    for chunk, images in zip(chunks, decoded(paths, size, channels, chunks, workers)):
        out[chunk[0]:chunk[-1] + 1] = images
    return out


def decoded(paths: list[str], size: int, channels: int, chunks: list[torch.Tensor], workers: int,
            pin: bool = False) -> Iterator[torch.Tensor]:
    """uint8 images of paths[chunk] for each chunk, decoded in order by `workers` processes."""
    loader = torch.utils.data.DataLoader(
        _Decoder(paths, size, channels), batch_size=None, sampler=chunks, num_workers=workers,
        pin_memory=pin, prefetch_factor=4 if workers else None)
    for images, error in loader:
        if error:
            raise DataError(error)
        yield images


@dataclass
class StreamedSplit:
    """A split too large for memory: batches decoded from disk by DataLoader workers."""
    paths: list[str]
    labels: torch.Tensor        # int64 [N] on the device
    size: int
    channels: int
    workers: int

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def image_shape(self) -> list[int]:
        return [self.channels, self.size, self.size]

    def _stream(self, chunks: list[torch.Tensor]) -> Iterator[torch.Tensor]:
        device = self.labels.device
        for images in decoded(self.paths, self.size, self.channels, chunks, self.workers,
                              pin=device.type == "cuda"):
            yield images.to(device, non_blocking=True)

    def gather_batches(self, order: torch.Tensor, slices: list[slice]
                       ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        on_device = order.to(self.labels.device, non_blocking=True)
        for s, images in zip(slices, self._stream([order[s] for s in slices])):
            yield images, on_device[s]

    def ordered_batches(self, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        chunks = [torch.arange(lo, min(lo + batch_size, len(self)))
                  for lo in range(0, len(self), batch_size)]
        for chunk, images in zip(chunks, self._stream(chunks)):
            yield images, self.labels[chunk[0]:chunk[-1] + 1]


def channel_stats(images: torch.Tensor, chunk: int = 4096) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel (mean, std) in [0, 1] of uint8 [N, H, W] or [N, H, W, C] images, summed in
    float64 chunk by chunk so that a large set never exists as a float copy."""
    c = 1 if images.ndim == 3 else images.shape[3]
    total = torch.zeros(c, dtype=torch.float64, device=images.device)
    squares = torch.zeros(c, dtype=torch.float64, device=images.device)
    for lo in range(0, images.shape[0], chunk):
        x = images[lo:lo + chunk].reshape(-1, c).double()
        total += x.sum(0)
        squares += x.pow(2).sum(0)
    count = images.numel() // c
    mean = total / count
    std = (squares / count - mean.pow(2)).clamp(min=0).sqrt()
    # a constant channel has std 0: divide by 1 (255 in pixel units) instead of by zero
    std = torch.where(std > 0, std, torch.full_like(std, 255.0))
    return tuple((mean / 255).tolist()), tuple((std / 255).tolist())


def available_memory() -> int:
    """Bytes the kernel says a new allocation can take without swapping."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def memory_budget(device: torch.device) -> int:
    """Bytes of uint8 pixels kept resident by default: a quarter of the free host memory (the
    decoded set passes through it), shared by the processes torchrun started on this machine,
    and on a GPU a quarter of its free memory, leaving the rest to the model."""
    budget = available_memory() // (4 * int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    if device.type == "cuda":
        budget = min(budget, torch.cuda.mem_get_info(device)[0] // 4)
    return budget


def default_workers() -> int:
    return min(8, max(0, len(os.sched_getaffinity(0)) - 1))


def load_folder(root: str | os.PathLike, device: torch.device | str = "cpu", image_size: int = 0,
                channels: int = 0, memory_mb: int = 0, workers: int = -1) -> Dataset:
    """An image folder as a Dataset: resident when its pixels fit memory_mb (0: memory_budget),
    streamed otherwise. channels 0 picks 1 or 3 from the images, image_size 0 is DEFAULT_SIZE."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: no such folder; --data-dir must name a folder with one subfolder "
                        f"of images per class")
    device = torch.device(device)
    classes, train_items, test_items = scan(root)
    if len(classes) < 2:
        raise DataError(f"{root}: one class ({classes[0]}); softmax needs at least two")
    if not test_items:
        raise DataError(f"{root}: no class has two images, so none can be held out for testing")
    size = image_size or DEFAULT_SIZE
    channels = channels or detect_channels([p for p, _ in train_items])
    # more processes than cores only add switching (and DataLoader's warning about it)
    workers = default_workers() if workers < 0 else min(workers, len(os.sched_getaffinity(0)))
    budget = memory_mb * 2 ** 20 if memory_mb else memory_budget(device)
    need = (len(train_items) + len(test_items)) * size * size * channels
    splits = {}
    for name, items in (("train", train_items), ("test", test_items)):
        paths = [str(p) for p, _ in items]
        labels = torch.tensor([y for _, y in items], dtype=torch.int64, device=device)
        if need <= budget:
            splits[name] = Split(decode_all(paths, size, channels, workers).to(device), labels)
        else:
            splits[name] = StreamedSplit(paths, labels, size, channels, workers)
    train = splits["train"]
    if isinstance(train, Split):
        mean, std = channel_stats(train.images)
    else:
        g = torch.Generator().manual_seed(0)
        sample = torch.randperm(len(train), generator=g)[:STATS_SAMPLE].sort().values
        mean, std = channel_stats(decode_all([train.paths[i] for i in sample.tolist()], size,
                                             channels, workers))
    return Dataset("folder", classes, mean, std, splits["train"], splits["test"])
