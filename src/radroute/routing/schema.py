"""What the ``router.toml`` models are built from: the base model, value types, and the one
function that turns a pydantic :class:`~pydantic.ValidationError` into ``key.path: message``.

Key paths are spelled as in the file: ``rules[1] (name).all[0].tag``, where an item of a
top-level list is named by its ``name`` key.
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, Strict, ValidationError, ValidationInfo


class ConfigModel(BaseModel):
    """A table of ``router.toml``: unknown keys are refused, values keep their TOML type, read-only."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


#: a string or a list of strings, read as a tuple
Names = Annotated[Union[str, Annotated[tuple[str, ...], Strict(False)]],
                  AfterValidator(lambda v: (v,) if isinstance(v, str) else v)]
#: a string or a number, read as text
Text = Annotated[Union[str, int, float], AfterValidator(str)]
Probability = Annotated[float, Field(ge=0.0, le=1.0)]
PositiveInt = Annotated[int, Field(gt=0)]
PositiveFloat = Annotated[float, Field(gt=0)]


def from_config_folder(path: str | Path, info: ValidationInfo) -> Path:
    """``~`` expanded; a relative path joined to the validation context's ``base`` (else the cwd)."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else (info.context or {}).get("base", Path.cwd()) / path


#: a path relative to the config file (see :func:`from_config_folder`)
ConfigPath = Annotated[Path, Strict(False), AfterValidator(from_config_folder)]
#: the same, kept as text
ConfigPathText = Annotated[str, AfterValidator(lambda v, info: str(from_config_folder(v, info)))]


class ProblemAt(ValueError):
    """Raised by a model's cross-check about a key below it (``loc``, from that model)."""

    def __init__(self, loc: tuple[str | int, ...], message: str):
        super().__init__(message)
        self.loc = loc


#: pydantic's type errors -> the TOML type that was expected
_EXPECTED = {"string_type": "str", "path_type": "str", "pattern_type": "str", "int_type": "int",
             "float_type": "float", "bool_type": "bool", "list_type": "list", "tuple_type": "list",
             "dict_type": "dict", "model_type": "dict"}
_MESSAGES = {
    "missing": "required key is missing",
    "literal_error": "must be {expected}, got {input!r}",
    "greater_than": "must be > {gt:g}, got {input!r}",
    "greater_than_equal": "must be >= {ge:g}, got {input!r}",
    "less_than_equal": "must be <= {le:g}, got {input!r}",
    "string_pattern_mismatch": "must match {pattern!r}, got {input!r}",
    "value_error": "{error}",
}


def _key_path(loc: tuple, data: Any, keys: int) -> str:
    """``loc`` as the file spells it. Elements that are not in ``data`` are the tags of union
    members and left out, except the last ``keys`` (a missing key, a cross-check's key)."""
    path, node = "", data
    for i, key in enumerate(loc):
        if isinstance(key, int) and isinstance(node, list) and key < len(node):
            node = node[key]
            name = node.get("name") if i == 1 and isinstance(node, dict) else None
            path += f"[{key}]" + (f" ({name})" if isinstance(name, str) and loc[-1] != "name" else "")
        elif isinstance(node, dict) and key in node or i >= len(loc) - keys:
            path += f".{key}"
            node = node.get(key) if isinstance(node, dict) else None
    return path.lstrip(".") or "config"


def error_message(exc: ValidationError, data: Any) -> str:
    """The first error of validating ``data`` as ``key.path: message``; a union's alternatives
    are merged (``expected bool or str``), a table's unknown keys listed together."""
    found = []
    for e in exc.errors(include_url=False):
        below = getattr((e.get("ctx") or {}).get("error"), "loc", ())
        loc, keys = e["loc"] + tuple(below), len(below) or int(e["type"] == "missing")
        if e["type"] == "extra_forbidden":  # reported by its table
            loc = loc[:-1]
        kind = "type" if e["type"] in _EXPECTED else e["type"]
        found.append((_key_path(loc, data, keys), kind, e))
    where, kind, first = found[0]
    for w, k, e in found:  # a union's branch that got further says more ('in[0]' under 'in')
        if w.startswith((f"{where}[", f"{where}.")):
            where, kind, first = w, k, e
            break
    alike = [e for w, k, e in found if (w, k) == (where, kind)]
    if kind == "extra_forbidden":
        message = "unknown key(s): " + ", ".join(sorted(str(e["loc"][-1]) for e in alike))
    elif kind == "type":
        expected = " or ".join(dict.fromkeys(_EXPECTED[e["type"]] for e in alike))
        message = f"expected {expected}, got {first['input']!r}"
    else:
        message = _MESSAGES.get(kind, "{msg}").format(input=first["input"], msg=first["msg"],
                                                      **(first.get("ctx") or {}))
    return f"{where}: {message}"


__all__ = ["ConfigModel", "ConfigPath", "ConfigPathText", "Names", "PositiveFloat", "PositiveInt",
           "Probability", "ProblemAt", "Text", "error_message", "from_config_folder"]
