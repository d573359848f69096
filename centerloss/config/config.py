"""Every hyper-parameter of a run in one dataclass; it is saved into every checkpoint."""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass

from centerloss.config import keep, limits
from centerloss.config.heads import DEFAULT_MARGIN, check_head, head_defaults
from centerloss.config.options import FROM_CONFIG, OPTIONS, check, flag_of
from centerloss.config.recipe import WARMUP_EPOCHS
from centerloss.errors import OptionError


@dataclass
class Config:
    # method (Wen et al. 2016)
    lam: float = 0.1            # weight of the center loss; 0 is softmax alone
    alpha: float = 0.5          # center learning rate of Eq. 4, in (0, 1]
    # classifier head (heads.py): softmax, or a margin head with center loss optional on top
    head: str = "softmax"       # softmax, sphereface, cosface or arcface
    margin: float | None = None  # margin heads: None takes the paper's (4, 0.35, 0.5), smaller in 2-D
    scale: float | None = None   # margin heads: s of s * cos(theta); None takes 64, 16 in 2-D
    # model
    model: str = "lenetspp"     # lenetspp (the paper's MNIST net), seed (the blog's) or resnet18
    feature_dim: int = 2        # 2 for plots; wider for real embeddings
    # data
    dataset: str = "mnist"
    data_dir: str = ""          # "" means the cache folder (~/.cache/cl/data)
    augment: int = 2            # random translation in pixels, 0 to switch off
    image_size: int = 0         # folder: side images are resized to (0: 64); built-ins keep theirs
    channels: int = 0           # folder: 1 or 3 (0: 1 if every image is grayscale, else 3)
    memory_mb: int = 0          # folder: largest set kept in memory, else streamed (0: 1/4 of free)
    workers: int = -1           # folder: image-decoding processes (-1: cores - 1, at most 8)
    # optimisation: SGD with Nesterov momentum, linear warm-up then cosine decay to 0 (recipe.py)
    epochs: int | None = None   # None: 12, or more for a small data set or a large batch (recipe.py)
    batch_size: int = 128
    lr: float | None = None     # peak learning rate; None: 0.05 * sqrt(batch_size / 128)
    momentum: float = 0.9
    weight_decay: float = 5e-4  # on the model only; centers never decay
    warmup_epochs: float = WARMUP_EPOCHS  # at least 100 steps, at most a fifth of the run (recipe.py)
    grad_clip: float = 2.0      # largest gradient norm of a step; 0: no clipping
    # run
    seed: int = 0
    device: str = "auto"
    precision: str = "auto"     # auto: bf16 where the device computes it natively, else fp32
    # torch.compile: true (the whole model), "blocks" (its BatchNorm + activation pairs alone,
    # model/blocks.py) or false; None: where it pays (device/compile_rule.py)
    compile: bool | str | None = None
    snapshot_train: int = 10000  # train-split features stored per epoch for plots (0: none)
    keep_checkpoints: str = keep.DEFAULT  # epoch checkpoints kept in RUN/epochs/: last, all or N

    def __post_init__(self) -> None:
        # a margin head's defaults (by feature size) are filled in here, so a checkpoint states
        # the numbers used and an older one, saved under other defaults, loads as it trained
        if self.head in DEFAULT_MARGIN and isinstance(self.feature_dim, int):
            margin, scale = head_defaults(self.head, self.feature_dim)
            self.margin = margin if self.margin is None else self.margin
            self.scale = scale if self.scale is None else self.scale

    def validate(self) -> None:
        """Raise OptionError with a one-line message naming the bad value and the fix."""
        check("--dataset", self.dataset)
        if 0 < self.image_size < 8:       # the range below allows 0 (the data set's own)
            raise OptionError(f"--image-size must be at least 8 pixels (0: the data set's own), "
                              f"got {self.image_size}")
        if self.channels not in (0, 1, 3):
            raise OptionError(f"--channels must be 1, 3 or 0 (auto), got {self.channels}")
        check_head(self.head, self.margin, self.scale)
        for flag, value in (("--model", self.model), ("--precision", self.precision),
                            ("--device", self.device)):
            check(flag, value)
        keep.keep_count(self.keep_checkpoints)
        if not (isinstance(self.compile, bool) or self.compile in (None, "blocks")):
            raise OptionError(f"compile must be true, false or blocks, got {self.compile!r}")
        check_numbers(self)   # every float finite, every number inside its range (limits.RANGES)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Config":
        """Read a config saved by to_json; unknown keys (from a newer cl) are an error."""
        raw = json.loads(text)
        if not isinstance(raw, dict):
            raise ValueError("config metadata is not a JSON object")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(raw) - names
        if unknown:
            raise ValueError(f"config metadata has unknown keys: {', '.join(sorted(unknown))}")
        # a run written before --keep-checkpoints kept every epoch: it goes on doing so
        raw.setdefault("keep_checkpoints", "all")
        cfg = cls(**raw)
        cfg.validate()
        return cfg


CONFIG_DEFAULTS = {f.name: f.default for f in dataclasses.fields(Config)}


def default_of(flag: str) -> object:
    """The default of an option: its own, or the Config field's it sets."""
    opt = OPTIONS[flag]
    return CONFIG_DEFAULTS[opt.name] if opt.default is FROM_CONFIG else opt.default


def check_numbers(cfg: Config) -> None:
    """Every number of a Config: each float finite, each field with a range inside it."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        flag = flag_of(f.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise OptionError(f"{flag} must be a finite number, got {value}")
        if flag in limits.RANGES:
            limits.check(flag, value)
