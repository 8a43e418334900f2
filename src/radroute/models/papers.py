"""The custom CNNs of two published anatomy classifiers, single-channel and size-agnostic.

* :class:`Roth2015` - Roth et al. 2015, "Anatomy-specific classification of medical images
  using deep convolutional nets": five conv layers with max-pooling, fully connected layers
  with dropout, ReLU (an AlexNet-style net, here narrower so it trains on a CPU).
* :class:`Menkovski2015` - Menkovski et al. 2015, "Can pretrained neural networks detect
  anatomy?": conv+BN blocks 32/16, 64/32, 128/128/64, 256/256/128, each followed by a
  3x3 max-pool with stride 2, then two dense-256 + BN + dropout layers, leaky ReLU.

Both end in an adaptive average pool, so any input size of at least 16 px works; the
defaults are sized for 64 px inputs. Both follow timm's ``forward_features`` /
``forward_head(x, pre_logits=False)`` convention.
"""
from __future__ import annotations

import torch
from torch import nn

from radroute.models._registry import register_model


class _Classifier(nn.Module):
    """Shared timm-style plumbing: ``forward = forward_head(forward_features(x))``."""

    features: nn.Module
    pool: nn.Module
    fc: nn.Module           # penultimate layers; their output are the "pre-logits" features
    classifier: nn.Linear
    num_features: int

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.fc(torch.flatten(self.pool(x), 1))
        return x if pre_logits else self.classifier(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.classifier

    def reset_classifier(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.classifier = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()


class Roth2015(_Classifier):
    """Five conv layers (three max-pools), two FC layers with dropout, ReLU."""

    def __init__(self, num_classes: int = 5, in_chans: int = 1, widths=(48, 96, 160, 160, 128),
                 fc_dim: int = 512, drop_rate: float = 0.5, pool_size: int = 4):
        super().__init__()
        c1, c2, c3, c4, c5 = widths
        relu = lambda: nn.ReLU(inplace=True)  # noqa: E731
        self.features = nn.Sequential(
            nn.Conv2d(in_chans, c1, 5, padding=2), relu(), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3, padding=1), relu(), nn.MaxPool2d(2),
            nn.Conv2d(c2, c3, 3, padding=1), relu(),
            nn.Conv2d(c3, c4, 3, padding=1), relu(),
            nn.Conv2d(c4, c5, 3, padding=1), relu(), nn.MaxPool2d(2),
        )
        self.pool = nn.AdaptiveAvgPool2d(pool_size)
        self.fc = nn.Sequential(
            nn.Linear(c5 * pool_size * pool_size, fc_dim), relu(), nn.Dropout(drop_rate),
            nn.Linear(fc_dim, fc_dim), relu(), nn.Dropout(drop_rate),
        )
        self.num_features = fc_dim
        self.reset_classifier(num_classes)


def _conv_bn(cin: int, cout: int, slope: float) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
            nn.LeakyReLU(slope, inplace=True)]


class Menkovski2015(_Classifier):
    """Conv+BN blocks, 3x3/2 max-pools, two dense-256 + BN + dropout layers, leaky ReLU."""

    BLOCKS = ((32, 16), (64, 32), (128, 128, 64), (256, 256, 128))

    def __init__(self, num_classes: int = 5, in_chans: int = 1, blocks=BLOCKS, dense: int = 256,
                 drop_rate: float = 0.5, slope: float = 0.01, pool_size: int = 2):
        super().__init__()
        layers: list[nn.Module] = []
        cin = in_chans
        for block in blocks:
            for cout in block:
                layers += _conv_bn(cin, cout, slope)
                cin = cout
            layers.append(nn.MaxPool2d(3, stride=2, padding=1))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(pool_size)
        dense_layers: list[nn.Module] = []
        din = cin * pool_size * pool_size
        for _ in range(2):
            dense_layers += [nn.Linear(din, dense, bias=False), nn.BatchNorm1d(dense),
                             nn.LeakyReLU(slope, inplace=True), nn.Dropout(drop_rate)]
            din = dense
        self.fc = nn.Sequential(*dense_layers)
        self.num_features = dense
        self.reset_classifier(num_classes)


@register_model(input_size=64, source="radroute", paper="Roth et al. 2015")
def roth2015(num_classes: int = 5, in_chans: int = 1, **kwargs) -> Roth2015:
    return Roth2015(num_classes=num_classes, in_chans=in_chans, **kwargs)


@register_model(input_size=64, source="radroute", paper="Menkovski et al. 2015")
def menkovski2015(num_classes: int = 5, in_chans: int = 1, **kwargs) -> Menkovski2015:
    return Menkovski2015(num_classes=num_classes, in_chans=in_chans, **kwargs)
