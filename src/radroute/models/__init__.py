"""Model registry (timm-style): ``create_model(name, num_classes, in_chans=1, ...)``.

>>> from radroute.models import create_model, list_models
>>> model = create_model("roth2015", num_classes=11)          # radroute's own
>>> model = create_model("mobilenet_v2", num_classes=5)       # alias of timm's mobilenetv2_100
>>> model = create_model("convnext_atto", num_classes=5)      # any timm name

Only :class:`ModelPackage` is imported eagerly: the registry (and torch) load on first use, so
reading a package for the ONNX backend does not import torch.
"""
from __future__ import annotations

import importlib
from typing import Any

from radroute.models.package import ModelPackage

_LAZY = {
    "create_model": "radroute.models._factory",
    "load_pretrained": "radroute.models._pretrained",
    "canonical_name": "radroute.models._factory",
    "get_default_cfg": "radroute.models._factory",
    "is_model": "radroute.models._factory",
    "list_models": "radroute.models._factory",
    "register_model": "radroute.models._factory",
}

__all__ = ["ModelPackage", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'radroute.models' has no attribute {name!r}")
