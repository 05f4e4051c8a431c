"""MLP and small CNN for MNIST-sized inputs.

``SmallCNN`` follows the architecture used for DP-SGD on MNIST by Papernot et al. 2021
("Tempered Sigmoid Activations for Deep Learning with Differential Privacy") and the Opacus /
TF Privacy MNIST examples (two 8x8/4x4 convolutions, 16 and 32 channels, a 32-unit hidden layer),
with GroupNorm available instead of BatchNorm because BatchNorm mixes examples within a batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from privlab._validation import check_choice, check_int

_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU}


class MLP(nn.Module):
    """Fully connected network ``in -> hidden[0] -> ... -> num_classes`` on flattened inputs."""

    def __init__(
        self,
        in_features: int = 784,
        hidden: Sequence[int] = (256, 256),
        num_classes: int = 10,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        check_int(in_features, "in_features", "MLP", low=1)
        check_int(num_classes, "num_classes", "MLP", low=2)
        check_choice(activation, "activation", "MLP", _ACTIVATIONS)
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for h in hidden:
            check_int(h, "hidden", "MLP", low=1)
            layers += [nn.Linear(width, h), _ACTIVATIONS[activation]()]
            width = h
        layers.append(nn.Linear(width, num_classes))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, *) -> logits (B, num_classes)
        out: torch.Tensor = self.net(x)
        return out


class SmallCNN(nn.Module):
    """Conv(in->16, 8, stride 2, pad 3) - act - MaxPool(2,1) - Conv(16->32, 4, stride 2) - act -
    MaxPool(2,1) - FC(32*4*4 -> 32) - act - FC(32 -> classes), for 1x28x28 inputs.

    ``groups`` > 0 inserts GroupNorm(groups, C) after each convolution.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 10,
        activation: str = "tanh",
        groups: int = 0,
    ) -> None:
        super().__init__()
        check_int(in_channels, "in_channels", "SmallCNN", low=1)
        check_int(num_classes, "num_classes", "SmallCNN", low=2)
        check_int(groups, "groups", "SmallCNN", low=0)
        check_choice(activation, "activation", "SmallCNN", _ACTIVATIONS)
        act = _ACTIVATIONS[activation]

        def norm(c: int) -> nn.Module:
            return nn.GroupNorm(groups, c) if groups else nn.Identity()

        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 16, 8, stride=2, padding=3),  # (B,16,14,14)
            norm(16),
            act(),
            nn.MaxPool2d(2, 1),  # (B,16,13,13)
            nn.Conv2d(16, 32, 4, stride=2),  # (B,32,5,5)
            norm(32),
            act(),
            nn.MaxPool2d(2, 1),  # (B,32,4,4)
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),  # (B,512)
            nn.Linear(32 * 4 * 4, 32),
            act(),
            nn.Linear(32, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # x: (B, C, 28, 28) -> logits (B, num_classes)
        out: torch.Tensor = self.classifier(self.features(x))
        return out
