"""A timm-style model registry: ``@register_model`` entry points with default configs.

Radroute's own architectures (``roth2015``, ``menkovski2015``), the timm models the
published systems used and torchvision's GoogLeNet register themselves here when their modules
are imported (``radroute.models._factory`` imports them); any other timm model name also works
through :func:`radroute.models.create_model`. This module imports none of them, so there is no
import cycle.
"""
from __future__ import annotations

import fnmatch
from typing import Any, Callable

_entrypoints: dict[str, Callable[..., Any]] = {}
_default_cfgs: dict[str, dict[str, Any]] = {}
_aliases: dict[str, str] = {}


def register_model(fn: Callable | None = None, *, name: str | None = None,
                   aliases: tuple[str, ...] = (), **default_cfg: Any):
    """Register a model entry point ``fn(num_classes, in_chans, **kwargs) -> nn.Module``.

    Usable bare (``@register_model``) or with options
    (``@register_model(name="x", aliases=("y",), input_size=64, paper="...")``). The keyword
    options become the model's default config (see :func:`get_default_cfg`).
    """

    def wrap(f: Callable) -> Callable:
        key = name or f.__name__
        _entrypoints[key] = f
        _default_cfgs[key] = {"architecture": key, **default_cfg}
        for alias in aliases:
            _aliases[alias] = key
        return f

    return wrap(fn) if fn is not None else wrap


def canonical_name(name: str) -> str:
    """The registered name for ``name`` or one of its aliases (``name`` itself otherwise)."""
    return _aliases.get(name, name)


def is_model(name: str) -> bool:
    """True when ``name`` (or an alias) is registered with radroute (not counting timm)."""
    return canonical_name(name) in _entrypoints


def model_entrypoint(name: str) -> Callable:
    return _entrypoints[canonical_name(name)]


def get_default_cfg(name: str) -> dict[str, Any]:
    """The default config of a registered model: input size, source, paper ..."""
    return dict(_default_cfgs[canonical_name(name)])


def list_models(pattern: str | None = None, include_timm: bool = False) -> list[str]:
    """Registered model names, optionally filtered by a wildcard ``pattern``.

    With ``include_timm=True`` every timm model name is listed as well (they all work
    with :func:`create_model`).
    """
    names = set(_entrypoints)
    if include_timm:
        import timm

        names.update(timm.list_models())
    if pattern:
        names = {n for n in names if fnmatch.fnmatch(n, pattern)}
    return sorted(names)
