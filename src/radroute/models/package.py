"""The model package: the one format that carries a trained classifier everywhere.

A package is a directory::

    NAME/
      radroute.json         # architecture, tasks + class names, preprocessing, thresholds, metrics
      weights.safetensors   # the state dict
      MODEL_CARD.md         # (bundled models) data, licenses, metrics, limits

The network returns one logits vector per image, the concatenation of every task's
logits in the order of ``tasks``; :meth:`ModelPackage.split_logits` cuts it per task.
Training writes packages, and inference, ONNX export, profiling and the router read
them, so the preprocessing a model was trained with is the one it is run with.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from radroute.errors import InvalidConfigError, ModelNotFoundError

from radroute.models._format import BUNDLED_DIR, CONFIG_NAME, FORMAT, WEIGHTS_NAME


@dataclass
class ModelPackage:
    """A trained model's description; ``state_dict`` is loaded lazily from ``path``."""

    name: str
    architecture: str
    #: ordered mapping task name -> class names, e.g. ``{"view": ["frontal", "lateral"]}``
    tasks: dict[str, list[str]]
    #: :class:`radroute.data.preprocess.Preprocessing` as a dict
    preprocessing: dict[str, Any]
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    in_chans: int = 1
    #: per-task abstention threshold on the top softmax score (calibrated on validation)
    thresholds: dict[str, float] = field(default_factory=dict)
    #: per-task mapping of class name -> body-part vocabulary term, where one exists
    body_part_map: dict[str, dict[str, str]] = field(default_factory=dict)
    #: tasks that DICOM tags answer better than pixels (see radroute.inference.tag_rules)
    tag_rules: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: data description: sources, licenses, split, sizes, command line
    training: dict[str, Any] = field(default_factory=dict)
    #: validation metrics as written by radroute.evaluation
    metrics: dict[str, Any] = field(default_factory=dict)
    format: str = FORMAT
    path: Path | None = None

    # ---- shape helpers -------------------------------------------------
    @property
    def num_outputs(self) -> int:
        return sum(len(c) for c in self.tasks.values())

    def split_logits(self, logits: np.ndarray) -> dict[str, np.ndarray]:
        """Cut (N, num_outputs) logits into ``{task: (N, n_classes)}``."""
        out, start = {}, 0
        for task, classes in self.tasks.items():
            out[task] = logits[:, start:start + len(classes)]
            start += len(classes)
        return out

    @property
    def weights_path(self) -> Path:
        if self.path is None:
            raise InvalidConfigError("package has no path yet; save it first")
        return self.path / WEIGHTS_NAME

    @property
    def label(self) -> str:
        """The ``model`` field of a prediction record: the bundled name, else the package path."""
        if self.path is not None and Path(self.path).resolve().parent == BUNDLED_DIR.resolve():
            return self.name
        return str(self.path) if self.path is not None else self.name

    @property
    def version(self) -> str:
        """A short hash of the weights file: changes whenever the weights change."""
        h = hashlib.sha256()
        with open(self.weights_path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        return h.hexdigest()[:12]

    # ---- persistence ---------------------------------------------------
    def to_config(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("path")
        return d

    def save(self, directory: str | Path, state_dict: dict) -> Path:
        """Write config and weights into ``directory`` (created) and return it."""
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
        save_file(tensors, str(directory / WEIGHTS_NAME))
        (directory / CONFIG_NAME).write_text(json.dumps(self.to_config(), indent=2) + "\n")
        self.path = directory
        return directory

    @classmethod
    def load(cls, name_or_path: str | Path) -> "ModelPackage":
        """Read a package from a bundled name (see :func:`bundled_names`) or a directory."""
        path = resolve(name_or_path)
        try:
            cfg = json.loads((path / CONFIG_NAME).read_text())
        except (OSError, ValueError) as exc:
            raise InvalidConfigError(f"cannot read {CONFIG_NAME}: {exc}", path) from exc
        if cfg.get("format") != FORMAT:
            raise InvalidConfigError(f"unknown package format {cfg.get('format')!r}", path)
        known = set(cls.__dataclass_fields__) - {"path"}
        pkg = cls(**{k: v for k, v in cfg.items() if k in known})
        pkg.path = path
        return pkg

    def state_dict(self) -> dict:
        from safetensors.torch import load_file

        return load_file(str(self.weights_path))

    def build(self):
        """The ``torch.nn.Module`` with the package's weights loaded, in eval mode."""
        from radroute.models._factory import create_model

        model = create_model(self.architecture, num_classes=self.num_outputs,
                             in_chans=self.in_chans, **self.arch_kwargs)
        model.load_state_dict(self.state_dict())
        return model.eval()


def bundled_names() -> list[str]:
    """Names of the models that ship with radroute."""
    if not BUNDLED_DIR.is_dir():
        return []
    return sorted(p.name for p in BUNDLED_DIR.iterdir() if (p / CONFIG_NAME).is_file())


def resolve(name_or_path: str | Path) -> Path:
    """A bundled model name or a package directory -> the package directory."""
    p = Path(name_or_path)
    if (p / CONFIG_NAME).is_file():
        return p
    if isinstance(name_or_path, str) and (BUNDLED_DIR / name_or_path / CONFIG_NAME).is_file():
        return BUNDLED_DIR / name_or_path
    raise ModelNotFoundError(
        f"no model package at {name_or_path!r}; bundled models: {', '.join(bundled_names()) or 'none'}",
        str(name_or_path),
    )
