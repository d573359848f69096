"""BatchNorm folded into the convolution before it, for inference.

In eval mode BatchNorm is an affine map per channel, y = (x - mean) / sqrt(var + eps) * gamma +
beta, so conv followed by BatchNorm is one conv with weight w * s and bias (b - mean) * s + beta,
s = gamma / sqrt(var + eps): the same function, one pass over the activations fewer. LeNets++
evaluated 1.5x as fast on the CPU (docs/performance.md)."""
from __future__ import annotations

import copy

import torch
from torch import nn

from centerloss.model.blocks import adjacent


def _fold(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A copy of conv that computes bn(conv(x)) with bn in eval mode."""
    folded = copy.deepcopy(conv)
    w = conv.weight.detach().double()
    scale = bn.running_var.double().add(bn.eps).rsqrt()
    if bn.affine:
        scale = scale * bn.weight.detach().double()
    bias = conv.bias.detach().double() if conv.bias is not None else torch.zeros_like(scale)
    shift = (bias - bn.running_mean.double()) * scale
    if bn.affine:
        shift = shift + bn.bias.detach().double()
    layout = (torch.channels_last if conv.weight.is_contiguous(memory_format=torch.channels_last)
              and conv.weight.stride(1) == 1 else torch.contiguous_format)
    folded.weight = nn.Parameter((w * scale.view(-1, 1, 1, 1)).to(conv.weight.dtype)
                                 .contiguous(memory_format=layout), requires_grad=False)
    folded.bias = nn.Parameter(shift.to(conv.weight.dtype), requires_grad=False)
    return folded


def foldable(conv: nn.Module, bn: nn.Module) -> bool:
    return (isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d)
            and bn.track_running_stats and bn.running_var is not None
            and conv.out_channels == bn.num_features)


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """model in eval mode with every Conv2d that a BatchNorm2d directly follows inside an
    nn.Sequential folded into one Conv2d: a copy, or model itself where there is nothing to fold
    (ResNet-18's blocks call their layers by name, not in a Sequential, and stay as they are).
    The copy shares nothing with model that training could change."""
    if not adjacent(model, foldable):
        return model.eval()
    folded = copy.deepcopy(model).eval()
    for seq, i in adjacent(folded, foldable):   # a BatchNorm is never a conv: no two pairs overlap
        seq[i] = _fold(seq[i], seq[i + 1])
        seq[i + 1] = nn.Identity()
    return folded
