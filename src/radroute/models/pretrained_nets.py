"""ImageNet architectures of the published systems, from timm (and torchvision's GoogLeNet).

Each is registered under its timm name plus a few plain aliases (``mobilenet_v2`` ...).
"""
from __future__ import annotations

from functools import partial

import torch
from torch import nn

from radroute.models._registry import register_model

#: timm name -> (aliases, paper that used it)
TIMM_MODELS: dict[str, tuple[tuple[str, ...], str]] = {
    "mobilenetv1_100": (("mobilenet_v1", "mobilenetv1"), "Pham et al. 2021 (Grad-CAM body part)"),
    "mobilenetv2_100": (("mobilenet_v2", "mobilenetv2"), "Pham et al. 2021"),
    "mobilenetv3_small_100": (("mobilenet_v3_small", "mobilenetv3_small"), "Pham et al. 2021"),
    "mobilenetv3_large_100": (("mobilenet_v3_large", "mobilenetv3_large"), "Pham et al. 2021"),
    "resnet18": ((), "MedMNIST v2 baseline"),
    "resnet34": ((), "Pham et al. 2021"),
    "efficientnet_b0": (("efficientnetb0",), "Pham et al. 2021"),
    "efficientnet_b1": (("efficientnetb1",), "Pham et al. 2021"),
    "efficientnet_b2": (("efficientnetb2",), "Pham et al. 2021"),
    "inception_v3": (("inceptionv3",), "Rajkomar et al. 2016 (GoogLeNet family)"),
}


def _timm_entry(timm_name: str, num_classes: int = 1000, in_chans: int = 1, **kwargs) -> nn.Module:
    import timm

    return timm.create_model(timm_name, pretrained=False, num_classes=num_classes,
                             in_chans=in_chans, **kwargs)


for _name, (_aliases, _paper) in TIMM_MODELS.items():
    _fn = partial(_timm_entry, _name)
    _fn.__name__ = _name  # type: ignore[attr-defined]
    register_model(_fn, name=_name, aliases=_aliases, source="timm", paper=_paper,
                   input_size=299 if _name == "inception_v3" else 224)


def _torchvision_googlenet_cls():
    from torchvision.models import GoogLeNet as _TvGoogLeNet

    class GoogLeNet(_TvGoogLeNet):
        """torchvision's GoogLeNet (aux logits off) with timm's forward_features/forward_head.

        The state dict keeps torchvision's names, so torchvision weight files load directly.
        """

        def __init__(self, num_classes: int = 1000, in_chans: int = 1, drop_rate: float = 0.2):
            super().__init__(num_classes=num_classes, aux_logits=False, transform_input=False,
                             init_weights=True, dropout=drop_rate)
            if in_chans != 3:
                from torchvision.models.googlenet import BasicConv2d

                self.conv1 = BasicConv2d(in_chans, 64, kernel_size=7, stride=2, padding=3)
                nn.init.trunc_normal_(self.conv1.conv.weight, std=0.01, a=-2, b=2)
            self.num_features = 1024
            self.num_classes = num_classes

        def forward_features(self, x: torch.Tensor) -> torch.Tensor:
            x = self.maxpool1(self.conv1(x))
            x = self.maxpool2(self.conv3(self.conv2(x)))
            x = self.maxpool3(self.inception3b(self.inception3a(x)))
            x = self.inception4a(x)
            x = self.inception4e(self.inception4d(self.inception4c(self.inception4b(x))))
            x = self.maxpool4(x)
            return self.inception5b(self.inception5a(x))

        def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
            x = torch.flatten(self.avgpool(x), 1)
            return x if pre_logits else self.fc(self.dropout(x))

        def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
            return self.forward_head(self.forward_features(x))

        def get_classifier(self) -> nn.Module:
            return self.fc

        def reset_classifier(self, num_classes: int) -> None:
            self.num_classes = num_classes
            self.fc = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()

    return GoogLeNet


@register_model(source="torchvision", paper="Rajkomar et al. 2016", input_size=224,
                torchvision_weights="GoogLeNet_Weights.IMAGENET1K_V1")
def googlenet(num_classes: int = 1000, in_chans: int = 1, **kwargs) -> nn.Module:
    return _torchvision_googlenet_cls()(num_classes=num_classes, in_chans=in_chans, **kwargs)
