"""Loading pretrained weights from local files only, adapted to the model's input channels."""
from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from radroute.errors import InvalidConfigError, ModelNotFoundError
from radroute.models import _registry
from radroute.models._format import WEIGHTS_NAME

_WRAPPER_KEYS = ("state_dict", "model", "model_state", "module")


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A state dict from a safetensors/torch file or a radroute model package directory."""
    if not path.exists():
        raise ModelNotFoundError(f"pretrained weights not found: {path}", path)
    if path.is_dir():  # a model package: its weights file
        path = path / WEIGHTS_NAME
        if not path.is_file():
            raise ModelNotFoundError(f"no {WEIGHTS_NAME} in the package folder {path.parent}", path.parent)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(str(path))
        else:
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any decode failure is a bad weights file
        raise InvalidConfigError(f"cannot read weights file: {exc}", path) from exc
    for key in _WRAPPER_KEYS:  # training checkpoints nest the weights
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
    if not isinstance(sd, dict):
        raise InvalidConfigError("weights file holds no state dict", path)
    return {k.removeprefix("module.").removeprefix("_orig_mod."): v for k, v in sd.items()
            if isinstance(v, torch.Tensor)}


def load_pretrained(model: nn.Module, path: Path) -> dict[str, list[str]]:
    """Load weights from ``path`` into ``model``; returns the keys it adapted / skipped.

    Conv weights whose input channels differ (RGB -> 1 channel) go through timm's
    ``adapt_input_conv`` (sum over RGB for one channel). Tensors of another shape (a classifier
    for another number of classes) keep their fresh initialisation. Any other missing key is an
    error: the file is for another architecture.
    """
    from timm.models import adapt_input_conv

    source = read_state_dict(path)
    target = model.state_dict()
    loaded, adapted, skipped = {}, [], []
    for key, value in source.items():
        if key not in target:
            continue
        want = target[key]
        if value.shape == want.shape:
            loaded[key] = value
        elif value.ndim == 4 and value.shape[0] == want.shape[0] and value.shape[2:] == want.shape[2:]:
            loaded[key] = adapt_input_conv(want.shape[1], value.float()).to(want.dtype)
            adapted.append(key)
        else:
            skipped.append(key)
    missing = [k for k in target if k not in loaded and k not in skipped
               and not k.endswith("num_batches_tracked")]
    if not loaded or missing:
        raise InvalidConfigError(
            f"weights in {path} do not fit this architecture: {len(missing)} missing tensors "
            f"(e.g. {', '.join(missing[:3])})", path)
    model.load_state_dict(loaded, strict=False)
    return {"adapted": adapted, "skipped": skipped}


def cached_weights_file(name: str) -> Path:
    """The locally cached ImageNet weights of ``name`` (timm hub cache or torchvision cache).

    Never downloads; raises :class:`ModelNotFoundError` naming where they were looked for.
    """
    cfg = _registry.get_default_cfg(name) if _registry.is_model(name) else {"source": "timm"}
    looked: list[str] = []
    if cfg.get("source") == "torchvision":
        from torchvision.models import get_weight

        weights = get_weight(cfg["torchvision_weights"])
        file = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(weights.url)
        if file.is_file():
            return file
        looked.append(str(file))
    elif cfg.get("source") == "timm":
        import timm
        from huggingface_hub import try_to_load_from_cache

        pcfg = timm.models.get_pretrained_cfg(name)
        if pcfg is not None:
            if pcfg.hf_hub_id:
                for filename in ("model.safetensors", "pytorch_model.bin"):
                    hit = try_to_load_from_cache(pcfg.hf_hub_id, filename)
                    if isinstance(hit, str):
                        return Path(hit)
                looked.append(f"Hugging Face cache {pcfg.hf_hub_id}")
            if pcfg.url:
                file = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(pcfg.url)
                if file.is_file():
                    return file
                looked.append(str(file))
    raise ModelNotFoundError(
        f"no pretrained weights for {name!r} on this machine (looked in: "
        f"{'; '.join(looked) or 'nowhere: radroute models have no ImageNet weights'}); "
        "pass pretrained_path=FILE / --pretrained-path FILE, or train from scratch", name)
