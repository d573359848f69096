"""Features of a trained model for a whole split or for image files, and the files they go to.

For every sample: the features, the logits (up to LOGITS_UP_TO_CLASSES classes unless asked
either way), the predicted class, the nearest center and the distance to it, and the label where
one is known (a split's, never an image file's)."""
from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from centerloss.data.folder import IMAGE_SUFFIXES, decode, fit_image, open_image, printable
from centerloss.data.registry import dataset_for, normalization_of
from centerloss.data.types import Split, Stats
from centerloss.device.runtime import Runtime
from centerloss.errors import EmbedError  # noqa: F401  (defined without torch, for the CLI)
from centerloss.evaluation.inference import infer, infer_outcomes, load_model
from centerloss.evaluation.metrics import nearest_center
from centerloss.store import checkpoint as ckpt_io
from centerloss.store.files import atomic_write, check_output as check_output_path

FORMAT = "cl-embedding/1"
FORMATS = (".safetensors", ".npy", ".csv")
# Models with more classes leave the logits out unless asked for them: at 20,000 identities they
# are 80 kB an image in float32 (800 MB for 10,000 images, in memory and on disk, and 20,000 CSV
# columns), where the features that `cl embed` is for take 8 bytes in 2-D.
LOGITS_UP_TO_CLASSES = 1000


def wants_logits(classes: int, logits: bool | None) -> bool:
    """Whether an embedding keeps the logits: as asked (--logits/--no-logits), else up to
    LOGITS_UP_TO_CLASSES classes."""
    return classes <= LOGITS_UP_TO_CLASSES if logits is None else logits


@dataclass
class Embedding:
    features: torch.Tensor              # [N, D] float32
    logits: torch.Tensor | None         # [N, C] float32, or None where left out
    predicted: torch.Tensor             # [N] int64, argmax of the logits
    nearest_center: torch.Tensor        # [N] int64
    center_distance: torch.Tensor       # [N] float32, Euclidean
    centers: torch.Tensor               # [C, D] float32
    classes: list[str]
    labels: torch.Tensor | None = None  # [N] int64 where known
    sources: list[str] = field(default_factory=list)   # image paths, one per sample, if any
    info: dict = field(default_factory=dict)            # checkpoint, epoch, dataset, split


def check_output(path: Path | str, overwrite: bool = False) -> str:
    """The format of an output file by its extension; an existing file is kept unless overwrite."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise EmbedError(f"{path}: cannot write {suffix or 'a file without extension'!r}; "
                         f"name it *.safetensors, *.npy or *.csv")
    check_output_path(path, overwrite)
    return suffix


def _run(model: torch.nn.Module, split: Split, mean: Stats, std: Stats, ckpt: ckpt_io.Checkpoint,
         runtime: Runtime, batch_size: int | None, info: dict, logits: bool | None) -> Embedding:
    if wants_logits(len(ckpt.classes), logits):
        features, z = infer(model, split, mean, std, runtime, batch_size)
        kept, predicted = z.cpu(), z.argmax(1)
    else:       # each batch's logits reduced to its predictions, never held whole
        outcomes = infer_outcomes(model, split, mean, std, runtime, batch_size)
        features, kept, predicted = outcomes.features, None, outcomes.predictions
    index, distance = nearest_center(features, ckpt.centers.to(runtime.device).float())
    return Embedding(features.cpu(), kept, predicted.cpu(), index.cpu(), distance.cpu(),
                     ckpt.centers.float().cpu(), list(ckpt.classes), info=info)


def _prepare(path: Path | str, runtime: Runtime):
    ckpt, model = load_model(path, runtime)
    info = {"checkpoint": str(path), "epoch": ckpt.epoch, "dataset": ckpt.config.dataset}
    return ckpt, model, info


def embed_split(path: Path | str, split: str = "test", data_dir: str | None = None,
                device: str = "auto", precision: str = "fp32", batch_size: int | None = None,
                runtime: Runtime | None = None, logits: bool | None = None) -> Embedding:
    """Every image of a split of the checkpoint's data set, in the data set's order; runtime,
    when given, replaces device and precision; logits: keep them (True), leave them out (False),
    or None: wants_logits decides by the number of classes."""
    runtime = runtime or Runtime.resolve(device, precision)
    dev = runtime.device
    ckpt, model, info = _prepare(path, runtime)
    cfg = ckpt.config
    ds = dataset_for(cfg, dev, data_dir, from_checkpoint=True)
    if list(ds.classes) != list(ckpt.classes):
        raise EmbedError(f"{path}: its classes do not match the {cfg.dataset} data set")
    if list(ds.split(split).image_shape) != list(ckpt.input_shape):
        raise EmbedError(f"{path}: it takes {ckpt.input_shape} inputs, the data set's {split} "
                         f"split gives {ds.split(split).image_shape}")
    mean, std = normalization_of(ckpt, ds)     # as trained, as cl eval feeds it
    emb = _run(model, ds.split(split), mean, std, ckpt, runtime, batch_size,
               {**info, "split": split}, logits)
    emb.labels = ds.split(split).labels.cpu()
    return emb


def image_files(paths: list[Path | str]) -> list[Path]:
    """Files named, and the image files under folders named (by extension, as training finds them:
    recursively, sorted; a PDF or a note beside them is passed over)."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise EmbedError(f"{p}: folder holds no image files")
            files.extend(found)
        elif p.is_file():
            files.append(p)
        else:
            raise EmbedError(f"{p}: no such file or folder")
    if not files:
        raise EmbedError("no image files given")
    return files


def read_image(path: Path, height: int, width: int, invert: bool = False, channels: int = 1) -> np.ndarray:
    """An image file as uint8 [height, width] (grayscale) or [height, width, 3] (RGB), resized to
    the model's input."""
    try:
        with open_image(path) as im:
            pixels = fit_image(im, height, width, channels, crop=False)
    # Pillow's decoders fail on bad files with many exception types (OSError, SyntaxError,
    # ValueError, DecompressionBombError, ...): whichever it is, the file is not a usable image.
    except Exception as e:
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise EmbedError(f"{path}: not an image that can be read ({why})") from e
    return 255 - pixels if invert else pixels


def light_background(pixels: np.ndarray) -> bool:
    """Whether an image's outer ring (a tenth of its side, at least one pixel) is light on
    average: a dark drawing on paper, the opposite of MNIST's light strokes on black."""
    h, w = pixels.shape[:2]
    k = max(1, min(h, w) // 10)
    ring = np.concatenate([pixels[:k].ravel(), pixels[-k:].ravel(), pixels[k:-k, :k].ravel(),
                           pixels[k:-k, -k:].ravel()])
    return float(ring.mean()) > 127.5


def embed_images(path: Path | str, images: list[Path | str], device: str = "auto",
                 precision: str = "fp32", batch_size: int | None = None,
                 invert: bool | str = False, runtime: Runtime | None = None,
                 logits: bool | None = None) -> Embedding:
    """Image files (or folders of them), converted to the checkpoint's channels and input size and
    normalised with its training statistics, as the training images were. Models trained on an
    image folder get that loader's shorter-side resize and centre crop; the others a plain resize.
    invert: True inverts every image, "auto" each one on a light background (light_background);
    info["inverted"] lists which were. logits as embed_split's."""
    files = image_files(images)
    runtime = runtime or Runtime.resolve(device, precision)
    dev = runtime.device
    ckpt, model, info = _prepare(path, runtime)
    channels, height, width = ckpt.input_shape
    if ckpt.config.dataset == "folder" and height == width:
        pixels = np.stack([_decode_folder_style(f, height, channels, False) for f in files])
    else:
        pixels = np.stack([read_image(f, height, width, False, channels) for f in files])
    flipped = [light_background(p) if invert == "auto" else bool(invert) for p in pixels]
    for i in np.flatnonzero(flipped):
        pixels[i] = 255 - pixels[i]
    split = Split(torch.from_numpy(pixels).to(dev), torch.zeros(len(files), dtype=torch.long, device=dev))
    mean, std = normalization_of(ckpt)
    emb = _run(model, split, mean, std, ckpt, runtime, batch_size,
               {**info, "split": "images", "inverted": json.dumps(flipped)}, logits)
    emb.sources = [printable(f) for f in files]
    return emb


def _decode_folder_style(path: Path, size: int, channels: int, invert: bool) -> np.ndarray:
    try:
        pixels = decode(path, size, channels)
    except Exception as e:      # see read_image: any decoder failure means "not an image"
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise EmbedError(f"{path}: not an image that can be read ({why})") from e
    return 255 - pixels if invert else pixels


def write_embedding(emb: Embedding, path: Path | str, overwrite: bool = False) -> Path:
    """Write emb as .safetensors, .npy or .csv by path's extension, atomically."""
    path = Path(path)
    writer = {".safetensors": _safetensors_bytes, ".npy": _npy_bytes, ".csv": _csv_bytes}
    data = writer[check_output(path, overwrite)](emb)
    atomic_write(path, data, exclusive=not overwrite)
    return path


def _tensors(emb: Embedding) -> dict[str, torch.Tensor]:
    out = {"features": emb.features, "logits": emb.logits, "predicted": emb.predicted,
           "nearest_center": emb.nearest_center, "center_distance": emb.center_distance}
    if emb.logits is None:
        del out["logits"]
    if emb.labels is not None:
        out["labels"] = emb.labels
    return out


def _safetensors_bytes(emb: Embedding) -> bytes:
    from safetensors.torch import save
    tensors = {k: v.contiguous() for k, v in _tensors(emb).items()}
    tensors["centers"] = emb.centers.contiguous()
    meta = {"format": FORMAT, "classes": json.dumps(emb.classes), "sources": json.dumps(emb.sources),
            **{k: str(v) for k, v in emb.info.items()}}
    return save(tensors, metadata=meta)


def _npy_bytes(emb: Embedding) -> bytes:
    """One structured array, a record per sample. Fixed-size fields only (the path is a
    fixed-width unicode string), so np.load reads it without allow_pickle."""
    n, d = emb.features.shape
    fields = [("features", np.float32, (d,))]
    if emb.logits is not None:
        fields.append(("logits", np.float32, (emb.logits.shape[1],)))
    fields += [("predicted", np.int64), ("nearest_center", np.int64), ("center_distance", np.float32)]
    if emb.labels is not None:
        fields.append(("label", np.int64))
    if emb.sources:
        fields.append(("path", f"<U{max(len(s) for s in emb.sources)}"))
    table = np.zeros(n, dtype=fields)
    for name, tensor in _tensors(emb).items():
        table["label" if name == "labels" else name] = tensor.numpy()
    if emb.sources:
        table["path"] = emb.sources
    buf = io.BytesIO()
    np.save(buf, table, allow_pickle=False)
    return buf.getvalue()


FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_text(text: str) -> str:
    """A name for a CSV cell that a spreadsheet will not run as a formula: one that begins with
    =, +, -, @, a tab or a carriage return gets a leading apostrophe (OWASP's advice on CSV
    injection). Numbers cl writes are not names and stay as they are."""
    return "'" + text if text.startswith(FORMULA_START) else text


def _csv_bytes(emb: Embedding) -> bytes:
    """A header and one row per sample; floats with 9 significant digits, enough to give back
    every float32 exactly."""
    n, d = emb.features.shape
    c = emb.logits.shape[1] if emb.logits is not None else 0
    known = emb.labels is not None
    header = (["path"] if emb.sources else ["index"]) + (["label", "label_name"] if known else [])
    header += ["predicted", "predicted_name", "nearest_center", "center_distance"]
    header += [f"f{j}" for j in range(d)] + [f"logit{j}" for j in range(c)]
    buf = io.StringIO()
    out = csv.writer(buf, lineterminator="\n")
    out.writerow(header)
    feats = emb.features.tolist()
    logits = emb.logits.tolist() if emb.logits is not None else [[]] * n
    pred, near = emb.predicted.tolist(), emb.nearest_center.tolist()
    dist = emb.center_distance.tolist()
    labels = emb.labels.tolist() if known else None
    names = [csv_text(name) for name in emb.classes]
    for i in range(n):
        row = [csv_text(emb.sources[i]) if emb.sources else i]
        if known:
            row += [labels[i], names[labels[i]]]
        row += [pred[i], names[pred[i]], near[i], f"{dist[i]:.9g}"]
        row += [f"{v:.9g}" for v in feats[i]] + [f"{v:.9g}" for v in logits[i]]
        out.writerow(row)
    return buf.getvalue().encode()
