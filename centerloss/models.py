"""LeNets++ (Wen et al. 2016, the MNIST net) and the seed blog's lighter net.

Both return (features, logits): the features are the layer that center loss acts on."""
from __future__ import annotations

import torch
from torch import nn


def _conv(cin: int, cout: int, k: int) -> list[nn.Module]:
    # BatchNorm is our addition to the paper's conv + PReLU: it lets plain SGD at a high learning
    # rate converge in a few epochs and leaves the feature layer, where center loss acts, untouched.
    return [nn.Conv2d(cin, cout, k, padding=k // 2, bias=False), nn.BatchNorm2d(cout), nn.PReLU(cout)]


class LeNetsPP(nn.Module):
    """conv5x5 32,32 - pool - 64,64 - pool - 128,128 - pool - fc(feature_dim) + PReLU - fc(classes).

    PReLU on the feature layer, not ReLU: ReLU would trap 2-D features in one quadrant.
    The classifier has no bias, as in the paper, so the classes split the plane by angle."""

    def __init__(self, num_classes: int = 10, feature_dim: int = 2, in_channels: int = 1,
                 image_size: int = 28):
        super().__init__()
        self.body = nn.Sequential(
            *_conv(in_channels, 32, 5), *_conv(32, 32, 5), nn.MaxPool2d(2),
            *_conv(32, 64, 5), *_conv(64, 64, 5), nn.MaxPool2d(2),
            *_conv(64, 128, 5), *_conv(128, 128, 5), nn.MaxPool2d(2),
            nn.Flatten())
        side = image_size // 8
        self.feature = nn.Sequential(nn.Linear(128 * side * side, feature_dim), nn.PReLU())
        self.classifier = nn.Linear(feature_dim, num_classes, bias=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.feature(self.body(x))
        return features, self.classifier(features)


class SeedNet(nn.Module):
    """The seed blog's net: two 3x3 convs, then fc 256 - 128 - feature_dim - classes."""

    def __init__(self, num_classes: int = 10, feature_dim: int = 2, in_channels: int = 1,
                 image_size: int = 28):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(64 * (image_size // 4) ** 2, 256), nn.ReLU(),
            nn.Linear(256, 128), nn.ReLU())
        self.feature = nn.Sequential(nn.Linear(128, feature_dim), nn.PReLU())
        self.classifier = nn.Linear(feature_dim, num_classes, bias=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.feature(self.body(x))
        return features, self.classifier(features)


MODEL_CLASSES = {"lenetspp": LeNetsPP, "seed": SeedNet}


def build_model(name: str, num_classes: int = 10, feature_dim: int = 2, in_channels: int = 1,
                image_size: int = 28) -> nn.Module:
    if name not in MODEL_CLASSES:
        raise ValueError(f"unknown model {name!r}; choose one of: {', '.join(MODEL_CLASSES)}")
    return MODEL_CLASSES[name](num_classes, feature_dim, in_channels, image_size)
