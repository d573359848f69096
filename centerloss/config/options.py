"""Every command-line option of cl, each defined once: flag, default, choices, range and help.

The CLI builds its Typer options from this table (cli/flags.py) and checks what a user typed
through it (`check`); the defaults of the options that set a run's hyper-parameters are Config's
fields (config.py reads them, `default_of`), and the ranges are limits.RANGES, so each fact stays
in one place. No torch here: `cl --help` reads this table without waiting for torch."""
from __future__ import annotations

from dataclasses import dataclass

from centerloss.config import limits, recipe
from centerloss.config.heads import HEADS, defaults_rule
from centerloss.errors import OptionError

MODELS = ("lenetspp", "seed", "resnet18")
PRECISIONS = ("auto", "fp32", "bf16")
DEVICES = ("auto", "cuda", "mps", "cpu")
DATASET_NAMES = ("mnist", "fashion-mnist", "kmnist", "cifar10", "folder")
SPLITS = ("train", "test")
METRICS = ("cosine", "euclidean")

FROM_CONFIG = object()      # the default is the Config field's (config.default_of)


@dataclass(frozen=True)
class Option:
    flag: str                       # "--lambda"
    name: str                       # the Config field or the command's parameter it fills
    help: str                       # a "[default: ...]" in it replaces the value in --help
    default: object = FROM_CONFIG
    choices: tuple[str, ...] = ()
    noun: str = ""                  # "unknown {noun} 'x'; choose one of: ..." when a choice is wrong;
    wrong: str = ""                 # else this message, or "{flag} must be one of: ...; got 'x'"
    toggle: bool = False            # a switch with its --no- form
    suggest: tuple[str, ...] = ()   # values completed in the shell besides the choices (not enforced)
    metavar: str = ""               # how --help shows the value, where choices do not say it


TABLE = [
    # the method and its head
    Option("--lambda", "lam", "Weight of the center loss; 0 trains softmax alone."),
    Option("--alpha", "alpha", "Center learning rate of Eq. 4, in (0, 1]."),
    Option("--head", "head", "Classifier: softmax (the paper's), or a margin head on normalised "
           "features: sphereface, cosface, arcface.", choices=HEADS, noun="head"),
    Option("--margin", "margin", "Margin of the head (sphereface: an integer; arcface: in "
           "radians) " + defaults_rule("margin") + "."),
    Option("--scale", "scale", "Margin heads: s in s * cos(theta), in [1, 128] "
           + defaults_rule("scale") + "."),
    # optimisation
    Option("--epochs", "epochs", "Passes over the training split " + recipe.epochs_rule() + "."),
    Option("--batch-size", "batch_size", "Images per batch."),
    Option("--lr", "lr", "Peak learning rate of SGD (Nesterov momentum, " + recipe.rule() + "."),
    Option("--grad-clip", "grad_clip", "Largest gradient norm of a step; 0 turns clipping off."),
    # the model and the data
    Option("--model", "model", "lenetspp (the paper's net), seed (the blog's lighter net) or "
           "resnet18 (torchvision's, for small images).", choices=MODELS, noun="model"),
    Option("--feature-dim", "feature_dim", "Size of the feature layer; 2 can be plotted, 128 or "
           "512 for verification."),
    Option("--dataset", "dataset", "mnist, fashion-mnist, kmnist, cifar10 or folder.",
           choices=DATASET_NAMES, noun="dataset"),
    Option("--data-dir", "data_dir", "Folder with the data set's files [default: ~/.cache/cl/data]; "
           "for --dataset folder, one subfolder of images per class.", default=None),
    Option("--image-size", "image_size", "--dataset folder: resize images to this square side "
           "[default: 64]."),
    Option("--channels", "channels", "--dataset folder: 1 (grayscale) or 3 (RGB) [default: 1 if "
           "all images are grayscale]."),
    Option("--memory-mb", "memory_mb", "--dataset folder: largest set kept in memory, else "
           "streamed from disk [default: a quarter of free memory]."),
    Option("--workers", "workers", "--dataset folder: image-decoding processes [default: cores - "
           "1, at most 8]."),
    Option("--augment", "augment", "Random translation in pixels; 0 turns it off."),
    Option("--seed", "seed", "Seed of the initial weights, batch order and augmentation."),
    # where and how it runs
    Option("--device", "device", "auto, cuda, mps or cpu.", choices=DEVICES, noun="device"),
    Option("--precision", "precision", "auto (bf16 where native), fp32 or bf16.",
           choices=PRECISIONS, noun="precision"),
    Option("--compile", "compile", "torch.compile the model [default: where it pays: LeNets++ in bf16 "
           "on a CPU with AMX, for a run long enough to repay the ~30 s of compiling, or only its "
           "BatchNorm + PReLU blocks (~18 s) for runs of two or three epochs; the start line says "
           "which].", toggle=True),
    # the run folder and what reads it
    Option("--out", "out", "Run folder for weights, snapshots and history.", default="params"),
    Option("--run", "run", "Run folder to read.", default="params"),
    Option("--checkpoint", "checkpoint", "A checkpoint file; overrides --run and --epoch.",
           default=None),
    Option("--epoch", "epoch", "Epoch of the run [default: the latest].", default=None),
    Option("--split", "split", "train or test [default: test].", default=None, choices=SPLITS,
           wrong="{flag} must be train or test, got {value!r}"),
    Option("--keep-checkpoints", "keep_checkpoints", "Epoch checkpoints kept in RUN/epochs/: last, "
           "all, or N (the N latest); model.safetensors always holds the latest, and the feature "
           "snapshots that plots read stay for every epoch.", suggest=("last", "all"),
           metavar="[last|all|N]"),
    Option("--config", "config", "A YAML file of settings, one option: value a line, keys without "
           "the dashes (lambda: 0.1, batch_size: 256); flags on the command line win over it. Every "
           "run writes its own as RUN/config.yaml.", default=None),
    Option("--print-config", "print_config", "Print the resolved config as YAML (a valid --config) "
           "and exit without training.", default=False),
    Option("--tensorboard", "tensorboard", "Also write TensorBoard event files into RUN/tensorboard/ "
           "(needs: pip install 'cl[tensorboard]').", default=False),
    Option("--overwrite", "overwrite", "Replace the output file if it exists.", default=False,
           toggle=True),
    # verification
    Option("--metric", "metric", "Pair score: cosine (similarity) or euclidean (distance).",
           default="cosine", choices=METRICS),
    Option("--num-pairs", "num_pairs", "--verify: pairs to draw, half matching.", default=6000),
    Option("--pair-seed", "pair_seed", "--verify: seed of the pairs drawn.", default=0),
    Option("--folds", "folds", "Folds of the best-threshold accuracy (LFW's protocol: 10).",
           default=10),
    Option("--fps", "fps", "Epochs per second in the GIF (the last one is held 2 s).", default=2.0),
]
OPTIONS: dict[str, Option] = {o.flag: o for o in TABLE}
# Config field -> its flag, for messages that name a field (a resume's conflicts, a range).
FIELD_FLAGS: dict[str, str] = {o.name: o.flag for o in TABLE if o.default is FROM_CONFIG}


def flag_of(field: str) -> str:
    """The flag that sets a Config field; fields without one are named as if they had it."""
    return FIELD_FLAGS.get(field, "--" + field.replace("_", "-"))


def check(flag: str, value: object) -> None:
    """OptionError unless value is one the option takes: among its choices, inside its range
    (limits.RANGES) and finite. None (the option left out) always passes."""
    if value is None:
        return
    opt = OPTIONS.get(flag)
    if opt is not None and opt.choices and value not in opt.choices:
        if opt.noun:
            raise OptionError(f"unknown {opt.noun} {value!r}; choose one of: {', '.join(opt.choices)}")
        template = opt.wrong or "{flag} must be one of: {choices}; got {value!r}"
        raise OptionError(template.format(flag=flag, value=value, choices=", ".join(opt.choices)))
    if flag in limits.RANGES and isinstance(value, (int, float)) and not isinstance(value, bool):
        limits.check(flag, value)


def check_all(**given: object) -> None:
    """check() each option given by its parameter name (num_pairs=..., epoch=...)."""
    names = {o.name: o.flag for o in TABLE}
    for name, value in given.items():
        check(names[name], value)
