"""LeNets++ (Wen et al. 2016, the MNIST net), the seed blog's lighter net, and ResNet-18.

All return (features, logits): the features are the layer that center loss acts on."""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from centerloss.config import Config
from centerloss.model.heads import build_head


def _slopes(weight: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """PReLU's slopes in x's dtype, one per channel on dimension 1 (or one for all)."""
    a = weight.to(x.dtype)
    return a.view(1, -1, *([1] * (x.ndim - 2))) if a.numel() > 1 else a


# bf16 keeps its sign in the top bit, so read as int16 its negative numbers (-0 included) are the
# negative integers, +0 is 0, and the positive numbers are the positive integers, in any order.
# The two functions below do on those integers what ATen would do on the bf16 values, with the
# same bits out: an integer pass runs at the memory's pace, where ATen's bf16 kernels convert
# each element to fp32 and back (in a LeNets++ step at batch 256 on the AMX Xeon, 32 x 28 x 28:
# clamp_max 1.73 -> 1.20 ms, docs/performance.md). A NaN differs (kept or dropped by its sign
# bit): a step with a NaN activation is already lost, and its loss says so.

def _negative_part(x: torch.Tensor) -> torch.Tensor:
    """min(x, 0) of a bf16 tensor: the integers clamped at 0 keep every negative value's bits and
    turn the others into +0."""
    return x.view(torch.int16).clamp_max(0).view(x.dtype)


def _where_positive(g: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """g where x > 0, else 0, of bf16 tensors: ATen's threshold_backward(g, x, 0), bit for bit,
    on their integers (x > 0 exactly where its integer is)."""
    return torch.ops.aten.threshold_backward(g.view(torch.int16), x.view(torch.int16), 0).view(g.dtype)


class _PReLUFunction(torch.autograd.Function):
    """nn.PReLU's training pass for bf16 on the CPU: ATen's forward, which is fast, and a backward
    in four passes over the activations, where ATen's is several times slower on bf16
    channels_last tensors: g where x > 0 (threshold_backward, on the bits), then lerp(that, g, a),
    which is g there and a * g elsewhere: ATen's input gradient bit for bit; the slopes' gradient,
    the sum of g * min(x, 0) (min taken on the bits) over all but the channels, is BatchNorm's
    backward reduction with mean 0 and a standard deviation of 1, one pass accumulating in fp32
    (within fp32's rounding of the exact sum, where autograd's sum of bf16 products for the lerp
    form was 3-7% off). Forward and backward of one PReLU, batch 256, channels_last, 32 x 28 x 28:
    18.1 ms as autograd's lerp(relu(x), x, a), 8.7 ms this way before the passes on the bits
    (docs/performance.md)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        return F.prelu(x, weight.to(x.dtype))

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        x, weight = ctx.saved_tensors
        gx = gw = None
        if ctx.needs_input_grad[0]:
            gx = torch.lerp(_where_positive(g, x), g, _slopes(weight, x))
        if ctx.needs_input_grad[1]:
            ones = torch.ones(x.shape[1], dtype=torch.float32, device=x.device)
            _, gw, _ = torch.ops.aten.native_batch_norm_backward(
                g, _negative_part(x), ones, None, None, torch.zeros_like(ones), ones, True, 0.0,
                [False, True, False])
            gw = (gw if weight.numel() > 1 else gw.sum()).view_as(weight).to(weight.dtype)
        return gx, gw


class PReLU(nn.PReLU):
    """nn.PReLU (same parameter, same checkpoints) whose bf16 training pass on the CPU is built
    from other ATen ops: ATen's PReLU backward on bf16 channels_last CPU tensors is several times
    slower (docs/performance.md). Eager, it is _PReLUFunction. Compiled, it stays relu(x) - a *
    relu(-x), the form inductor's fused kernels were measured with. Without gradients, in fp32
    (where the composites gain nothing) and elsewhere than the CPU, it is ATen's PReLU whole."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (x.dtype == torch.bfloat16 and x.device.type == "cpu" and torch.is_grad_enabled()
                and x.ndim >= 2):
            return super().forward(x)
        if torch.compiler.is_compiling():
            a = _slopes(self.weight, x)
            return F.relu(x) - a * F.relu(-x)
        return _PReLUFunction.apply(x, self.weight)


SMALL_SIDE = 8        # images at most this many pixels high and wide take _SmallImageConv


def _bf16_autocast_on_cpu() -> bool:
    """Whether autocast runs CPU ops in bf16 here (torch 2.4 on asks by device type, older torch
    through its CPU functions)."""
    if hasattr(torch, "get_autocast_dtype"):
        return torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    return torch.is_autocast_cpu_enabled() and torch.get_autocast_cpu_dtype() == torch.bfloat16


def _tiles(t: torch.Tensor, gap: Sequence[int]) -> torch.Tensor:
    """The images of an (N, C, H, W) tensor four to a picture, two by two, gap[0] rows and gap[1]
    columns of zeros between them, as a channels_last (ceil(N / 4), C, 2H + gap, 2W + gap)
    tensor; a batch that is not a multiple of four is made one with zero images."""
    n, c, h, w = t.shape
    v = t.permute(0, 2, 3, 1)                                       # N, H, W, C
    if n % 4:
        v = torch.cat([v, v.new_zeros(4 - n % 4, h, w, c)])
    v = v.reshape(-1, 2, 2, h, w, c)
    out = v.new_zeros(v.shape[0], 2 * h + gap[0], 2 * w + gap[1], c)
    for i in range(2):
        for j in range(2):
            top, left = i * (h + gap[0]), j * (w + gap[1])
            out[:, top:top + h, left:left + w] = v[:, i, j]
    return out.permute(0, 3, 1, 2)


def _stride1(padding: Sequence[int]) -> tuple:
    """aten.convolution_backward's arguments after the bias sizes for a stride-1, undilated,
    ungrouped convolution with this padding."""
    return [1, 1], list(padding), [1, 1], False, [0, 0], 1


def _tiled_weight_grad_eager(g: torch.Tensor, x: torch.Tensor, weight: torch.Tensor,
                             padding: Sequence[int]) -> torch.Tensor:
    """The weight gradient of a stride-1 convolution with this padding, taken over the images and
    their output gradients tiled (_tiles), laid out as the weight is."""
    gw = torch.ops.aten.convolution_backward(_tiles(g, padding), _tiles(x, padding), weight, None,
                                             *_stride1(padding), [False, True, False])[1]
    return gw if gw.stride() == weight.stride() else torch.empty_like(weight).copy_(gw)


def _tiled_weight_grad_operator():
    """The tiled weight gradient as an operator of its own, which inductor calls as it calls ATen's
    convolutions: traced through, the tiling became inductor's own scatter kernels and a compiled
    step gained nothing (docs/performance.md). None where torch lacks torch.library.custom_op as
    torch 2.4 made it: a compiled model then keeps ATen's convolutions (Conv2d._small_images)."""
    try:
        op = torch.library.custom_op(
            "centerloss::tiled_weight_grad", _tiled_weight_grad_eager, mutates_args=(),
            schema="(Tensor g, Tensor x, Tensor weight, int[] padding) -> Tensor")
    except (AttributeError, TypeError):
        return None

    @op.register_fake
    def _(g: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, padding: Sequence[int]) -> torch.Tensor:
        return torch.empty_like(weight)
    return op


_tiled_weight_grad = _tiled_weight_grad_operator()


class _SmallImageConv(torch.autograd.Function):
    """A stride-1 'same' convolution without bias of small images, whose weight gradient is taken
    over the images tiled four to a picture. oneDNN's bf16 weight gradient is least efficient on
    small images (on the AMX Xeon, 715-840 GFLOP/s at 7 x 7 against 1,800 at 28 x 28). Tiles
    kept apart by as many zeros as the padding see, at every position, what each image with its
    own padding sees, and the gaps' outputs have a zero gradient: the same sum, with more zeros
    in it, that oneDNN computes faster (LeNets++'s 128 -> 128 conv at 7 x 7, batch 256: 12.3 ->
    7.0 ms, tiling included; docs/performance.md). The forward and the input's gradient are
    ATen's own. Compiled, the tiled weight gradient is the operator centerloss::tiled_weight_grad."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, padding: tuple[int, int]) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.padding = list(padding)
        return F.conv2d(x, weight, None, 1, padding)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None, None]:
        x, weight = ctx.saved_tensors
        gx = gw = None
        if ctx.needs_input_grad[0]:
            gx = torch.ops.aten.convolution_backward(g, x, weight, None, *_stride1(ctx.padding),
                                                     [True, False, False])[0]
        if ctx.needs_input_grad[1]:
            tiled = _tiled_weight_grad if torch.compiler.is_compiling() else _tiled_weight_grad_eager
            gw = tiled(g, x, weight, ctx.padding)
        return gx, gw, None


class Conv2d(nn.Conv2d):
    """nn.Conv2d (same parameters, same checkpoints) that, on the CPU, gives a one-channel input a
    second channel of zeros and its weight a slice of zeros: the same output, but oneDNN has no
    fast kernel for one input channel, and the first conv of a grey image took 2.3x (bf16) to 3x
    (fp32) as long, forward and backward, as with two channels (docs/performance.md). Training in
    bf16 autocast on the CPU, a stride-1 'same' conv without bias of images at most SMALL_SIDE
    pixels wide takes its weight gradient over tiled images (_SmallImageConv)."""

    def _small_images(self, x: torch.Tensor) -> bool:
        k = self.kernel_size
        return (x.ndim == 4 and x.device.type == "cpu" and x.shape[-2] <= SMALL_SIDE
                and x.shape[-1] <= SMALL_SIDE and torch.is_grad_enabled()
                and _bf16_autocast_on_cpu() and self.bias is None
                and self.groups == 1 and self.padding_mode == "zeros"
                and tuple(self.stride) == (1, 1) and tuple(self.dilation) == (1, 1)
                and k[0] % 2 == 1 and k[1] % 2 == 1
                and tuple(self.padding) == (k[0] // 2, k[1] // 2)
                and (_tiled_weight_grad is not None or not torch.compiler.is_compiling())
                and not torch.onnx.is_in_onnx_export())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._small_images(x):
            with torch.autocast("cpu", enabled=False):     # as autocast would: both in bf16
                return _SmallImageConv.apply(x.to(torch.bfloat16), self.weight.to(torch.bfloat16),
                                             tuple(self.padding))
        if not (self.in_channels == 1 and self.groups == 1 and self.padding_mode == "zeros"
                and x.device.type == "cpu" and not torch.onnx.is_in_onnx_export()):
            return super().forward(x)
        # a one-channel tensor is contiguous in both layouts: as torch's conv does, the output is
        # channels_last where the input's or the weight's strides say so
        cl = x.stride(1) == 1 or self.weight.stride(1) == 1
        layout = torch.channels_last if cl else torch.contiguous_format
        x = F.pad(x, (0, 0, 0, 0, 0, 1)).contiguous(memory_format=layout)
        w = F.pad(self.weight, (0, 0, 0, 0, 0, 1)).contiguous(memory_format=layout)
        return F.conv2d(x, w, self.bias, self.stride, self.padding, self.dilation)


class MaxPool2d(nn.MaxPool2d):
    """nn.MaxPool2d(2) whose compiled form is the larger of four strided slices: the same values,
    but inductor fuses its backward with BatchNorm's and PReLU's, where max_pool2d's backward was
    a scatter into an NCHW copy. The slices are taken of the NHWC view of the (channels_last)
    input, so that their backward, a new tensor of zeros, is laid out as the input is: sliced in
    NCHW terms it was an NCHW buffer, which cost inductor a transposing copy and left BatchNorm's
    backward reduction over 32 channels on one thread (the compiled step 84 -> 74 ms on the AMX
    Xeon, docs/performance.md). A tie shares its gradient instead of giving it all to the first
    of the tied inputs. Eager runs and unbatched (C, H, W) inputs keep ATen's kernel (and its tie
    rule), and an ONNX export keeps its MaxPool operator."""

    def __init__(self) -> None:
        super().__init__(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not torch.compiler.is_compiling() or torch.onnx.is_in_onnx_export() or x.ndim != 4:
            return super().forward(x)
        h, w = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2     # an odd row or column is dropped
        y = x.permute(0, 2, 3, 1)                               # N, H, W, C
        y = torch.maximum(torch.maximum(y[:, 0:h:2, 0:w:2], y[:, 0:h:2, 1:w:2]),
                          torch.maximum(y[:, 1:h:2, 0:w:2], y[:, 1:h:2, 1:w:2]))
        return y.permute(0, 3, 1, 2)


class _ChannelsLastFlatten(torch.autograd.Function):
    """x.flatten(1) of an (N, C, H, W) channels_last tensor, whose gradient goes back to x laid
    out as x is."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        ctx.shape = x.shape
        return x.flatten(1)             # C, H, W order: a copy, as channels_last is H, W, C

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g: torch.Tensor) -> torch.Tensor:
        return g.view(ctx.shape).contiguous(memory_format=torch.channels_last)


class Flatten(nn.Flatten):
    """nn.Flatten (the same C, H, W order, so the same Linear after it and the same checkpoints)
    whose gradient keeps a channels_last input's layout. Autograd's is a view of the flat
    gradient, an NCHW tensor, and the max-pooling before it then ran its backward in NCHW, with
    a copy of its input into that layout and of the result back: a LeNets++ step at batch 256 on
    the AMX Xeon took 166.8 ms that way, 164.9 this way (docs/performance.md). Without gradients,
    compiled (inductor picks its own layouts) and in an ONNX export it is nn.Flatten."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (x.ndim == 4 and self.start_dim == 1 and self.end_dim == -1 and x.requires_grad
                and torch.is_grad_enabled() and not x.is_contiguous()
                and x.is_contiguous(memory_format=torch.channels_last)
                and not torch.compiler.is_compiling() and not torch.onnx.is_in_onnx_export()):
            return _ChannelsLastFlatten.apply(x)
        return super().forward(x)


class PoolFirst(nn.Sequential):
    """nn.Sequential (the same children, so the same checkpoints) that runs each PReLU directly
    followed by a max-pooling the other way round, pooling first, wherever that is the same
    function: eager on the CPU, while the PReLU's slopes are all at least zero. PReLU is then
    monotone, so the pooled maximum of the activations is the activation of the pooled maximum,
    and the gradient reaches the same position; PReLU runs on a quarter of the values. LeNets++'s
    bf16 step at batch 128 on the AMX Xeon: 93.8 -> 85.6 ms (docs/performance.md). A negative
    slope (PReLU no longer monotone), a compile, an ONNX export or trace, and other devices (the
    test of the slopes would wait for the device) keep the order as written."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        layers = list(self)
        swap = (x.device.type == "cpu" and not torch.compiler.is_compiling()
                and not torch.onnx.is_in_onnx_export() and not torch.jit.is_tracing())
        i = 0
        while i < len(layers):
            layer = layers[i]
            if (swap and i + 1 < len(layers) and isinstance(layer, nn.PReLU)
                    and isinstance(layers[i + 1], nn.MaxPool2d) and not layers[i + 1].return_indices
                    and bool((layer.weight >= 0).all())):
                x = layer(layers[i + 1](x))
                i += 2
            else:
                x = layer(x)
                i += 1
        return x


def _conv(cin: int, cout: int, k: int) -> list[nn.Module]:
    # BatchNorm is our addition to the paper's conv + PReLU: it lets plain SGD at a high learning
    # rate converge in a few epochs and leaves the feature layer, where center loss acts, untouched.
    return [Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm2d(cout), PReLU(cout)]


class LeNetsPP(nn.Module):
    """conv5x5 32,32 - pool - 64,64 - pool - 128,128 - pool - fc(feature_dim) + PReLU - fc(classes).

    PReLU on the feature layer, not ReLU: ReLU would trap 2-D features in one quadrant.
    The classifier has no bias, as in the paper, so the classes split the plane by angle."""

    def __init__(self, num_classes: int = 10, feature_dim: int = 2, in_channels: int = 1,
                 image_size: int = 28):
        super().__init__()
        self.body = PoolFirst(
            *_conv(in_channels, 32, 5), *_conv(32, 32, 5), MaxPool2d(),
            *_conv(32, 64, 5), *_conv(64, 64, 5), MaxPool2d(),
            *_conv(64, 128, 5), *_conv(128, 128, 5), MaxPool2d(),
            Flatten())
        side = image_size // 8
        self.feature = nn.Sequential(nn.Linear(128 * side * side, feature_dim), PReLU())
        self.classifier = nn.Linear(feature_dim, num_classes, bias=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.feature(self.body(x))
        return features, self.classifier(features)


class SeedNet(nn.Module):
    """The seed blog's net: two 3x3 convs, then fc 256 - 128 - feature_dim - classes.

    Each conv's max-pooling comes before its ReLU, not after as in the blog: ReLU is monotone, so
    relu(max(x)) = max(relu(x)) and the gradients are the same too (a window whose maximum is not
    positive passes none back either way), but ReLU then runs on a quarter of the values: a step
    at batch 1024 on the AMX Xeon took 259 ms in fp32 and 193 this way (docs/performance.md)."""

    def __init__(self, num_classes: int = 10, feature_dim: int = 2, in_channels: int = 1,
                 image_size: int = 28):
        super().__init__()
        self.body = nn.Sequential(
            Conv2d(in_channels, 32, 3, padding=1), nn.MaxPool2d(2), nn.ReLU(),
            nn.Conv2d(32, 64, 3, padding=1), nn.MaxPool2d(2), nn.ReLU(),
            Flatten(),
            nn.Linear(64 * (image_size // 4) ** 2, 256), nn.ReLU(),
            nn.Linear(256, 128), nn.ReLU())
        self.feature = nn.Sequential(nn.Linear(128, feature_dim), PReLU())
        self.classifier = nn.Linear(feature_dim, num_classes, bias=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.feature(self.body(x))
        return features, self.classifier(features)


class ResNet18(nn.Module):
    """torchvision's ResNet-18 (weights=None) for small images, with an embedding layer.

    The ImageNet stem (7x7 stride-2 conv, then max-pooling) would shrink a 32x32 image to 8x8
    before the first block; a 3x3 stride-1 conv and no pooling keep the four stages at 32, 16, 8
    and 4 pixels, as ResNets for CIFAR do. Each block's last BatchNorm starts at zero, so a block
    starts as the identity (Goyal et al. 2017): deep nets then train from the first step.

    The embedding is Linear(512, feature_dim) + BatchNorm, not PReLU: BatchNorm fixes the scale
    of every feature dimension, so center loss can only tighten classes relative to the spread
    between them and cannot shrink the whole space towards zero, while the sign of a feature is
    left free (verification compares them by angle or distance, never through a rectifier)."""

    def __init__(self, num_classes: int = 10, feature_dim: int = 128, in_channels: int = 3,
                 image_size: int = 32):
        super().__init__()
        from torchvision.models import resnet18  # imported here: it is slow and few runs need it
        body = resnet18(weights=None, zero_init_residual=True)
        body.conv1 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
        body.maxpool = nn.Identity()
        body.fc = nn.Identity()                   # the body ends at the 512-D pooled vector
        self.body = body
        self.feature = nn.Sequential(nn.Linear(512, feature_dim, bias=False), nn.BatchNorm1d(feature_dim))
        self.classifier = nn.Linear(feature_dim, num_classes, bias=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.feature(self.body(x))
        return features, self.classifier(features)


MODEL_CLASSES = {"lenetspp": LeNetsPP, "seed": SeedNet, "resnet18": ResNet18}


def build_model(name: str, num_classes: int = 10, feature_dim: int = 2, in_channels: int = 1,
                image_size: int = 28, head: str = "softmax", margin: float | None = None,
                scale: float | None = None) -> nn.Module:
    """The named net; a margin head (heads.py) replaces its Linear classifier under the same name."""
    if name not in MODEL_CLASSES:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(MODEL_CLASSES)}")
    model = MODEL_CLASSES[name](num_classes, feature_dim, in_channels, image_size)
    if head != "softmax":
        model.classifier = build_head(head, feature_dim, num_classes, margin, scale)
        if isinstance(model.feature[-1], nn.PReLU):
            # A margin head sees features only through their direction, and its gradient grows as
            # 1 / ||x||: from the feature layer's first norms (about 0.02) the first steps threw
            # every feature far out along one shared direction and training stalled there
            # (the seed net stayed at chance on MNIST). BatchNorm instead of PReLU, the
            # embedding of ArcFace's paper (FC + BN), takes away that shared offset and holds
            # the norms near 1; ResNet-18's embedding is FC + BN already.
            model.feature[-1] = nn.BatchNorm1d(feature_dim)
    return model


def place(model: nn.Module, device: torch.device | str) -> nn.Module:
    """model on device in channels_last, the layout cl trains and infers in: oneDNN's and cuDNN's
    fast convolutions want it, and a model left in NCHW evaluated MNIST at half the speed on the
    CPU (bf16 3,900 against 8,000 images/s, fp32 1,300-1,600 against 1,800-2,100)."""
    return model.to(device, memory_format=torch.channels_last)


def build_model_for(cfg: Config, num_classes: int, input_shape: Sequence[int]) -> nn.Module:
    """The model a run's config describes, for num_classes classes of [C, H, W] images."""
    c, h, _ = input_shape
    return build_model(cfg.model, num_classes, cfg.feature_dim, c, h, cfg.head, cfg.margin, cfg.scale)
