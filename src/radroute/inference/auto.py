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
from radroute.inference.pipeline import DecodedImage, DecodedInput
from radroute.inference.policy import ModelPolicy
from radroute.inference.predictor import BatchClassifier, Predictor, failed_record, load_predictor
from radroute.inference.record import Prediction, chain
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
        self.versions = {name: package.version for name, package in self.packages.items()}
        self.version = ",".join(f"{n}={v}" for n, v in self.versions.items())

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
        """Each image through its cascade: the model chosen from its tags, then the models its
        answers lead to (``ModelPolicy.then``); one record per image from all its stages."""
        stages: dict[tuple[int, int], list[Prediction]] = {}
        todo = [(i, j, item.model) for i, item in enumerate(decoded) if item.error is None
                and item.model in self.packages for j in range(len(item.images))]
        while todo:
            by_model: dict[str, list[tuple[int, int]]] = {}
            for i, j, model in todo:
                by_model.setdefault(model, []).append((i, j))
            todo = []
            for model, where in by_model.items():
                predictor = self.predictor(model)
                images = [decoded[i].images[j] for i, j in where]
                for (i, j), probs in zip(where, predictor.image_probabilities(images, model, batch_size)):
                    record = predictor.record(decoded[i], decoded[i].images[j], probs)
                    stages.setdefault((i, j), []).append(record)
                    nxt = self.policy.next_model(model, record.predictions)
                    if nxt is not None:
                        todo.append((i, j, nxt))
        out = []
        for i, item in enumerate(decoded):
            if (i, 0) not in stages:  # failed, or failed before a model was chosen
                out.append([failed_record(item, item.model, self.versions.get(item.model))])
            else:
                out.append([chain(stages[(i, j)]) for j in range(len(item.images))])
        return out

    def decode_inline(self, item: Any) -> DecodedInput:
        """An :class:`radroute.io.Image` goes to its tags' models; a bare 2-D array to the
        untagged ones (already preprocessed 3-D arrays need one model: use ``load_model(name)``)."""
        from radroute.data.preprocess import Preprocessing
        from radroute.io.types import Image, Metadata

        if isinstance(item, Image):
            meta, pixels, frame = item.meta, item.pixels, item.frame
        elif getattr(item, "ndim", None) == 2:
            meta, pixels, frame = Metadata(), item, None
        else:
            raise InvalidConfigError(f"cannot choose a model for a {type(item).__name__} of shape "
                                     f"{getattr(item, 'shape', None)}: give a 2-D image or radroute.io.Image")
        models = self.policy.stages_for(meta)
        arrays = {m: Preprocessing.from_dict(self.packages[m].preprocessing).from_array(pixels) for m in models}
        return DecodedInput(meta.path, models, [DecodedImage(arrays, frame, meta.sop_instance_uid,
                                                             meta.series_instance_uid)], meta=meta)
