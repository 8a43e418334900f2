"""The bundled models as one predictor: each image goes to the model its tags call for.

:class:`AutoPredictor` owns the policy of which model sees which image (a
:class:`~radroute.inference.policy.ModelPolicy`) for ``radroute classify`` without ``--model``,
the Python API (``load_model("auto")``) and the router (``[classifier] model = "auto"``). The
decoders read each file once, at the resolution of the model chosen for it; a model's weights
load when the first image that needs it arrives.
"""
from __future__ import annotations

from typing import Any

from radroute.errors import InvalidConfigError
from radroute.inference.onnx import ONNX_BESIDE
from radroute.inference.pipeline import DecodedInput
from radroute.inference.policy import ModelPolicy
from radroute.inference.predictor import BatchClassifier, Predictor, failed_record, load_predictor
from radroute.inference.record import Prediction
from radroute.models.package import ModelPackage


class AutoPredictor(BatchClassifier):
    """Several model packages behind one ``predict``; ``policy`` picks one per image."""

    name = "auto"
    #: the versions of every model, ``name=version`` joined by ``,``
    version: str

    def __init__(self, policy: ModelPolicy | None = None, backend: str = "torch", *,
                 threshold: float | None = None, threads: int | None = None):
        self.policy = policy or ModelPolicy()
        self.backend = backend
        self._options: dict[str, Any] = {"threshold": threshold, "threads": threads}
        # the packages' configs (tasks, preprocessing) are read now, their weights on first use
        self.packages = {name: ModelPackage.load(name) for name in self.policy.models}
        self._predictors: dict[str, Predictor] = {}
        self.version = ",".join(f"{n}={p.version}" for n, p in self.packages.items())

    def __repr__(self) -> str:
        return f"AutoPredictor({', '.join(self.packages)}, backend={self.backend!r})"

    @property
    def tasks(self) -> dict[str, list[str]]:
        """Every model's tasks (a task two models share lists the classes of both)."""
        out: dict[str, list[str]] = {}
        for package in self.packages.values():
            for task, classes in package.tasks.items():
                out.setdefault(task, [])
                out[task] += [c for c in classes if c not in out[task]]
        return out

    @property
    def thresholds(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for name, package in self.packages.items():
            for task in package.tasks:
                out.setdefault(task, self._threshold(package, task))
        return out

    @property
    def body_part_map(self) -> dict[str, dict[str, str]]:
        out: dict[str, dict[str, str]] = {}
        for package in self.packages.values():
            for task, mapping in package.body_part_map.items():
                out.setdefault(task, {}).update(mapping)
        return out

    @property
    def uses_torch(self) -> bool:
        return self.backend == "torch" or (self.backend == "auto" and any(
            not (p.path / ONNX_BESIDE).is_file() for p in self.packages.values()))

    def _threshold(self, package: ModelPackage, task: str) -> float:
        forced = self._options["threshold"]
        return float(forced if forced is not None else package.thresholds.get(task, 0.0))

    @property
    def plans(self) -> dict[str, dict[str, Any]]:
        return {name: package.preprocessing for name, package in self.packages.items()}

    def predictor(self, name: str) -> Predictor:
        """The loaded predictor of one of the models (loaded on first call)."""
        if name not in self._predictors:
            self._predictors[name] = load_predictor(self.packages[name].path, self.backend,
                                                    **self._options)
        return self._predictors[name]

    def classify_decoded(self, decoded: list[DecodedInput], batch_size: int = 32) -> list[list[Prediction]]:
        results: list[list[Prediction] | None] = [None] * len(decoded)
        by_model: dict[str | None, list[int]] = {}
        for i, item in enumerate(decoded):
            by_model.setdefault(item.model if item.model in self.packages else None, []).append(i)
        for name, indices in by_model.items():
            if name is None:  # failed before a model was chosen
                for i in indices:
                    results[i] = [failed_record(decoded[i])]
                continue
            batch = self.predictor(name).classify_decoded([decoded[i] for i in indices], batch_size)
            for i, records in zip(indices, batch):
                results[i] = records
        return results  # type: ignore[return-value]

    def decode_inline(self, item: Any) -> DecodedInput:
        """An :class:`radroute.io.Image` goes to its tags' model; a bare array to the untagged one."""
        from radroute.io.types import Image

        if isinstance(item, Image):
            name = self.policy.model_for(item.meta)
        elif getattr(item, "ndim", None) in (2, 3):
            name = self.policy.untagged
        else:
            raise InvalidConfigError(f"cannot classify a {type(item).__name__}")
        return self.predictor(name).decode_inline(item)
