"""Run model packages on images: :class:`Predictor` (one model), :func:`load_model`.

A predictor turns paths, :class:`radroute.io.Image` objects or arrays into
:class:`~radroute.inference.record.Prediction` records (one per image), with the PyTorch or the
ONNX Runtime backend. Files are decoded in parallel worker processes while the model runs.
:class:`BatchClassifier` holds what every predictor shares (decoding, batching, order);
:class:`radroute.inference.auto.AutoPredictor` is the other one: it picks the model per image.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from radroute.data.preprocess import Preprocessing
from radroute.errors import InvalidConfigError
from radroute.inference.backends import BACKENDS, OnnxBackend, TorchBackend, softmax
from radroute.inference.onnx import ONNX_BESIDE, cached_onnx, package_from_onnx
from radroute.inference.pipeline import DecodedImage, DecodedInput, decode_paths
from radroute.inference.policy import ModelPolicy
from radroute.inference.record import Prediction, make_prediction
from radroute.inference.tag_rules import apply_tag_rules
from radroute.models.package import ModelPackage

_END = object()


def failed_record(decoded: DecodedInput, model: str | None = None,
                  model_version: str | None = None) -> Prediction:
    """The record of an input that could not be decoded."""
    return Prediction.failed(decoded.path, decoded.error or {}, model=model, model_version=model_version)



class BatchClassifier:
    """Decoding, batching and input order, shared by :class:`Predictor` and ``AutoPredictor``.

    Subclasses say how inputs are read (:attr:`plans`, :attr:`policy`), how an in-memory input
    becomes a :class:`DecodedInput` and how a batch of decoded inputs becomes records.
    """

    name: str
    version: str | None
    #: the model-to-image policy passed to the decoders (``None``: the only plan is used)
    policy: ModelPolicy | None = None

    @property
    def uses_torch(self) -> bool:
        """Whether a model may run on PyTorch (whose thread count is process-wide)."""
        raise NotImplementedError

    @property
    def plans(self) -> dict[str, dict[str, Any]]:
        """Model key -> preprocessing dict: how each model wants its input read."""
        raise NotImplementedError

    def decode_inline(self, item: Any) -> DecodedInput:
        raise NotImplementedError

    def classify_decoded(self, decoded: list[DecodedInput], batch_size: int = 32) -> list[list[Prediction]]:
        """Per decoded input, its records (one per image, or one error record)."""
        raise NotImplementedError

    def iter_inputs(self, inputs: Iterable[Any], *, batch_size: int = 32, workers: int = 0,
                    frames: str | int = "all") -> Iterator[list[Prediction]]:
        """Lazily classify ``inputs`` in order, yielding each input's records (one per image,
        or one error record).

        Paths are read by ``workers`` processes (0: in this process); ``frames`` is ``"all"``
        or one frame / slice index.
        """
        items = iter(inputs)
        stash: list[Any] = []

        def paths_until_other(first: Any) -> Iterator:
            yield first
            # stop at the first non-path so that Image/array inputs keep their place in the order
            for item in items:
                if not isinstance(item, (str, Path)):
                    stash.append(item)
                    return
                yield item

        queue: list[DecodedInput] = []
        while True:
            item = stash.pop() if stash else next(items, _END)
            if item is _END:
                break
            if isinstance(item, (str, Path)):
                stream = decode_paths(paths_until_other(item), self.plans, choose=self.policy,
                                      frames=frames, workers=workers)
            else:
                stream = iter([self.decode_inline(item)])
            for decoded in stream:
                queue.append(decoded)
                if len(queue) >= batch_size or sum(len(d.images) for d in queue) >= batch_size:
                    yield from self.classify_decoded(queue, batch_size)
                    queue = []
        yield from self.classify_decoded(queue, batch_size)

    def iter_predict(self, inputs: Iterable[Any], *, batch_size: int = 32, workers: int = 0,
                     frames: str | int = "all") -> Iterator[Prediction]:
        """Lazily classify ``inputs`` in order, yielding one record per image (see :meth:`iter_inputs`)."""
        for records in self.iter_inputs(inputs, batch_size=batch_size, workers=workers, frames=frames):
            yield from records

    def predict(self, inputs: Any, batch_size: int = 32, workers: int = 0,
                frames: str | int = "all") -> list[Prediction]:
        """Classify paths, :class:`Image` objects or arrays (or one of them); one record per image."""
        if isinstance(inputs, (str, Path, np.ndarray)) or not isinstance(inputs, Iterable):
            inputs = [inputs]
        return list(self.iter_predict(inputs, batch_size=batch_size, workers=workers, frames=frames))


class Predictor(BatchClassifier):
    """One model package ready to classify images; build one with :func:`load_model`.

    Attributes: ``package`` (the :class:`ModelPackage`), ``name`` (the record's ``model``),
    ``version`` (hash of the weights), ``backend`` (``torch`` or ``onnx``), ``thresholds``
    (per-task abstention thresholds in effect), ``preprocessing``.
    """

    def __init__(self, package: ModelPackage, backend: str = "torch", *,
                 threshold: float | None = None, threads: int | None = None,
                 onnx_path: str | Path | None = None, name: str | None = None,
                 version: str | None = None):
        if backend not in BACKENDS:
            raise InvalidConfigError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
        self.package = package
        self.preprocessing = Preprocessing.from_dict(package.preprocessing)
        self.name = name or package.label
        self.version = version or package.version
        self.backend = backend
        self.thresholds = {task: float(threshold if threshold is not None
                                       else package.thresholds.get(task, 0.0))
                           for task in package.tasks}
        if backend == "torch":
            self._runner: TorchBackend | OnnxBackend = TorchBackend(package)
        else:
            self._runner = OnnxBackend(onnx_path or cached_onnx(package), threads)

    def __repr__(self) -> str:
        return f"Predictor({self.name!r}, version={self.version!r}, backend={self.backend!r})"

    @property
    def uses_torch(self) -> bool:
        return self.backend == "torch"

    @property
    def tasks(self) -> dict[str, list[str]]:
        return dict(self.package.tasks)

    @property
    def body_part_map(self) -> dict[str, dict[str, str]]:
        return dict(self.package.body_part_map)

    @property
    def plans(self) -> dict[str, dict[str, Any]]:
        return {self.name: self.package.preprocessing}

    # ---- arrays ------------------------------------------------------------
    def predict_arrays(self, x: np.ndarray) -> dict[str, np.ndarray]:
        """Preprocessed ``(N, C, S, S)`` float32 -> ``{task: probabilities (N, n_classes)}``."""
        logits = self._runner.logits(np.asarray(x, dtype=np.float32))
        return {task: softmax(part) for task, part in self.package.split_logits(logits).items()}

    def features(self, x: np.ndarray) -> np.ndarray:
        """Penultimate features ``(N, D)`` of preprocessed images (torch backend only)."""
        if not isinstance(self._runner, TorchBackend):
            raise InvalidConfigError("features need the torch backend")
        return self._runner.features(np.asarray(x, dtype=np.float32))

    # ---- records -----------------------------------------------------------
    @property
    def identity(self) -> dict[str, Any]:
        """This model's entry in a record's ``models``."""
        return {"name": self.name, "version": self.version, "tasks": list(self.package.tasks)}

    def record(self, decoded: DecodedInput, image: DecodedImage, probs: dict[str, np.ndarray]) -> Prediction:
        """The record of one classified image (the package's tag rules applied)."""
        rules = self.package.tag_rules

        def adjust(predictions):
            return apply_tag_rules(predictions, rules, decoded.meta, self.thresholds)

        return make_prediction(probs, self.package.tasks, self.thresholds, self.package.body_part_map,
                               adjust=adjust if rules else None,
                               path=decoded.path, frame=image.frame,
                               sop_instance_uid=image.sop_instance_uid,
                               series_instance_uid=image.series_instance_uid,
                               model=self.name, model_version=self.version, models=[self.identity])

    def image_probabilities(self, images: list[DecodedImage], key: str | None = None,
                            batch_size: int = 32) -> list[dict[str, np.ndarray]]:
        """Per image, ``{task: probabilities}`` from its array for ``key`` (default: this model)."""
        key = key or self.name
        out: list[dict[str, np.ndarray]] = []
        for start in range(0, len(images), batch_size):
            chunk = images[start:start + batch_size]
            probs = self.predict_arrays(np.stack([im.arrays[key] for im in chunk]))
            out += [{t: p[i] for t, p in probs.items()} for i in range(len(chunk))]
        return out

    def classify_decoded(self, decoded: list[DecodedInput], batch_size: int = 32) -> list[list[Prediction]]:
        images = [im for d in decoded if d.error is None for im in d.images]
        it = iter(self.image_probabilities(images, batch_size=batch_size))
        out = []
        for d in decoded:
            if d.error is not None or not d.images:
                out.append([failed_record(d, self.name, self.version)])
            else:
                out.append([self.record(d, im, next(it)) for im in d.images])
        return out

    def decode_inline(self, item: Any) -> DecodedInput:
        """An :class:`radroute.io.Image` or an array -> :class:`DecodedInput` (in this process).

        Arrays: 2-D ``(H, W)`` in [0, 1] go through the preprocessing; 3-D ``(C, S, S)`` are taken
        as already preprocessed.
        """
        from radroute.io.types import Image

        if isinstance(item, Image):
            meta = item.meta
            return DecodedInput(meta.path, [self.name], [DecodedImage(
                {self.name: self.preprocessing.from_image(item)}, item.frame,
                meta.sop_instance_uid, meta.series_instance_uid)], meta=meta)
        arr = np.asarray(item, dtype=np.float32)
        if arr.ndim == 2:
            arr = self.preprocessing.from_array(arr)
        elif arr.ndim != 3:
            raise InvalidConfigError(f"expected a (H, W) or (C, S, S) array, got shape {arr.shape}")
        return DecodedInput(None, [self.name], [DecodedImage({self.name: arr})])


def load_predictor(name_or_path: str | Path, backend: str = "torch", *, threshold: float | None = None,
                   threads: int | None = None) -> Predictor:
    """A :class:`Predictor` for a bundled model name, a package directory or an exported ``.onnx``
    (see :func:`radroute.inference.load_model`, which also takes ``"auto"``)."""
    if str(name_or_path).endswith(".onnx"):
        package, meta = package_from_onnx(name_or_path)
        return Predictor(package, "onnx", threshold=threshold, threads=threads,
                         onnx_path=name_or_path, name=meta["model"], version=meta["model_version"])
    package = ModelPackage.load(name_or_path)
    if backend == "auto":
        backend = "onnx" if (package.path / ONNX_BESIDE).is_file() else "torch"
    return Predictor(package, backend, threshold=threshold, threads=threads)
