"""``create_model``: build any registered or timm model, single-channel, optionally pretrained."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from torch import nn

from radroute.errors import InvalidConfigError, ModelNotFoundError
from radroute.models import _registry
from radroute.models import papers, pretrained_nets  # noqa: F401  (register the built-in models)
from radroute.models._pretrained import cached_weights_file, load_pretrained
from radroute.models._registry import (  # noqa: F401  (the registry's public face)
    canonical_name, get_default_cfg, is_model, list_models, register_model,
)


def create_model(name: str, num_classes: int, in_chans: int = 1, pretrained: bool = False,
                 pretrained_path: str | os.PathLike | None = None, **kwargs: Any) -> nn.Module:
    """Build model ``name`` with ``num_classes`` outputs and ``in_chans`` input channels.

    ``name`` is a radroute registry name or alias (see :func:`list_models`) or any timm model
    name. Weights come from ``pretrained_path`` (a ``.safetensors``/``.pth`` state dict, a timm
    or torchvision checkpoint, or a radroute model package directory) or, with
    ``pretrained=True``, from the local timm / torchvision cache; nothing is downloaded.
    RGB first-layer weights are summed onto ``in_chans`` channels (timm's ``adapt_input_conv``)
    and a classifier of another size is left freshly initialised.

    Raises :class:`ModelNotFoundError` for an unknown name or weights that are not available.
    """
    canonical = _registry.canonical_name(name)
    if _registry.is_model(canonical):
        model = _registry.model_entrypoint(canonical)(num_classes=num_classes, in_chans=in_chans,
                                                      **kwargs)
    else:
        import timm

        if not timm.is_model(name):
            raise ModelNotFoundError(
                f"unknown architecture {name!r}; radroute models: "
                f"{', '.join(_registry.list_models())} (or any timm model name)", name)
        try:
            model = timm.create_model(name, pretrained=False, num_classes=num_classes,
                                      in_chans=in_chans, **kwargs)
        except TypeError as exc:
            raise InvalidConfigError(f"bad arguments for {name}: {exc}", name) from exc
    if pretrained_path is not None:
        load_pretrained(model, Path(pretrained_path))
    elif pretrained:
        load_pretrained(model, cached_weights_file(canonical))
    model.architecture = canonical  # type: ignore[attr-defined]
    return model
