"""`centerloss.load`: a trained run, or one checkpoint, as a model that takes images as you have
them and gives their features and logits.

    model = centerloss.load("params")              # the run's latest epoch; or epoch=5
    out = model(images)                            # out.features [N, D], out.logits [N, classes]

Images may be uint8 arrays or tensors, [N, H, W] (grayscale) or [N, H, W, C] (or [N, C, H, W]),
a single [H, W] image, PIL images, or a list of either. They are brought to the model's channels
and size the way `cl embed` brings image files (RGB to gray by Pillow's luma, a plain bilinear
resize, or for a model trained on an image folder that folder's shorter-side resize and centre
crop) and normalised with the statistics the checkpoint stores, exactly as training did."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from PIL import Image

from centerloss.config import Config
from centerloss.data.folder import fit_image
from centerloss.data.registry import normalization_of
from centerloss.data.types import Split
from centerloss.device.runtime import Runtime
from centerloss.errors import ImageInputError, OptionError
from centerloss.evaluation.inference import infer
from centerloss.evaluation.metrics import nearest_center
from centerloss.model.build import build_from_checkpoint
from centerloss.model.fold import fold_batchnorm
from centerloss.model.nets import place
from centerloss.store import checkpoint as ckpt_io


class Output(NamedTuple):
    features: torch.Tensor      # [N, D] float32, on the CPU
    logits: torch.Tensor        # [N, classes] float32, on the CPU


@dataclass
class TrainedModel:
    """A trained cl model with what it was trained on: call it on images."""
    module: torch.nn.Module     # images normalised as below -> (features, logits)
    classes: list[str]
    centers: torch.Tensor       # [classes, D], on the CPU
    config: Config
    epoch: int
    metrics: dict               # that epoch's, as in history.jsonl
    mean: list[float]           # per channel, of pixels scaled to [0, 1]
    std: list[float]
    input_shape: list[int]      # [C, H, W]
    path: Path                  # the checkpoint read
    device: torch.device
    # what calls run: module with its BatchNorms folded (model/fold.py), made once at the first
    # call, since folding takes several times one small batch's forward pass
    _inference: torch.nn.Module | None = field(default=None, init=False, repr=False)

    def __call__(self, images: Any) -> Output:
        """Features and logits of the images, in fp32, without gradients."""
        pixels = self.pixels(images).to(self.device)
        split = Split(pixels, torch.zeros(len(pixels), dtype=torch.long, device=self.device))
        if self._inference is None:
            self._inference = fold_batchnorm(self.module)
        features, logits = infer(self._inference, split, self.mean, self.std,
                                 Runtime(self.device, "fp32"))
        return Output(features.cpu(), logits.cpu())

    def predict(self, images: Any) -> list[str]:
        """The class name the softmax head gives each image."""
        return [self.classes[i] for i in self(images).logits.argmax(1).tolist()]

    def nearest_center(self, features: torch.Tensor) -> torch.Tensor:
        """The index of each feature's nearest class center (center loss's own classifier)."""
        return nearest_center(features.float(), self.centers.float())[0]

    def pixels(self, images: Any) -> torch.Tensor:
        """images as the uint8 batch the model takes: [N, H, W] (one channel) or [N, H, W, 3]."""
        channels, height, width = self.input_shape
        if isinstance(images, Image.Image):
            images = [images]
        if isinstance(images, (list, tuple)):       # one image each: PIL, [H, W] or [H, W, C]
            if not images:
                raise ImageInputError("no images given")
            return torch.stack([torch.from_numpy(self._fit(one)) if isinstance(one, Image.Image)
                                else self.pixels(_one(one))[0] for one in images])
        batch = _batch(images)
        _, h, w, c = batch.shape
        if (h, w) == (height, width) and c == channels:
            return batch[..., 0] if channels == 1 else batch
        return torch.from_numpy(np.stack([self._fit(Image.fromarray(image[..., 0], "L") if c == 1
                                                    else Image.fromarray(image, "RGB"))
                                          for image in batch.numpy()]))

    def _fit(self, im: Image.Image) -> np.ndarray:
        channels, height, width = self.input_shape
        crop = self.config.dataset == "folder" and height == width      # that loader's crop
        return fit_image(im, height, width, channels, crop)


def _one(image: Any) -> Any:
    """One image of a list, [H, W] or [H, W, C], as a batch of one."""
    shape = tuple(getattr(image, "shape", ()))
    if len(shape) == 3 and shape[-1] in (1, 3):
        return image[None]
    return image


def _batch(images: Any) -> torch.Tensor:
    """uint8 [N, H, W, C] on the CPU from an array or tensor of one image or a batch."""
    if isinstance(images, np.ndarray):
        images = torch.from_numpy(np.ascontiguousarray(images))
    if not isinstance(images, torch.Tensor):
        raise ImageInputError(f"images must be uint8 arrays or tensors, or PIL images; got "
                              f"{type(images).__name__}")
    if images.dtype != torch.uint8:
        raise ImageInputError(f"images must be uint8 pixels (0-255), as read from image files; got "
                              f"{str(images.dtype).replace('torch.', '')}: convert with "
                              f"(x * 255).round().astype('uint8') if yours are in [0, 1]")
    x = images.detach().cpu()
    if x.ndim == 2:                                       # one grayscale image
        x = x.unsqueeze(0)
    if x.ndim == 3:                                       # [N, H, W]
        x = x.unsqueeze(-1)
    if x.ndim == 4 and x.shape[-1] not in (1, 3) and x.shape[1] in (1, 3):
        x = x.permute(0, 2, 3, 1)                         # [N, C, H, W] as torch lays it out
    if x.ndim != 4 or x.shape[-1] not in (1, 3) or x.shape[0] == 0:
        raise ImageInputError(f"images must be [N, H, W] (grayscale), [N, H, W, C] or [N, C, H, W] "
                              f"with C 1 or 3, or one [H, W] image; got shape {list(images.shape)}")
    return x


def load(path: str | Path = "params", epoch: int | None = None, device: str = "auto") -> TrainedModel:
    """A run folder (its latest epoch, or `epoch`) or a checkpoint file, as a TrainedModel on
    `device` (auto: CUDA, then MPS, then the CPU). The file is checked before anything is built,
    and nothing in it is unpickled: a checkpoint from a stranger cannot run code."""
    path = Path(path)
    if path.is_file() and epoch is not None:
        raise OptionError(f"epoch={epoch} picks an epoch of a run folder, and {path} is a "
                          f"checkpoint file; pass the run folder, or leave epoch out")
    file = path if path.is_file() else ckpt_io.resolve(path, None, epoch)
    ckpt = ckpt_io.load_checkpoint(file)
    runtime = Runtime.resolve(device, "fp32")
    module = place(build_from_checkpoint(ckpt, file), runtime.device).eval()
    mean, std = normalization_of(ckpt)
    return TrainedModel(module, list(ckpt.classes), ckpt.centers.float(), ckpt.config, ckpt.epoch,
                        ckpt.metrics, list(mean), list(std), list(ckpt.input_shape), file,
                        runtime.device)

