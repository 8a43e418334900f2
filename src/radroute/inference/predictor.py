"""Run a model package on images: the :class:`Predictor` and :func:`load_model`.

A predictor turns paths, :class:`radroute.io.Image` objects or arrays into the prediction
records of docs/architecture.md (one JSON-ready dict per image), with the PyTorch or the
ONNX Runtime backend. Files are decoded in parallel worker processes while the model runs.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from radroute.errors import InvalidConfigError
from radroute.inference.onnx import ONNX_BESIDE
from radroute.inference.pipeline import DecodedImage, DecodedInput, decode_paths
from radroute.models.package import BUNDLED_DIR, ModelPackage

BACKENDS = ("torch", "onnx")


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, numerically stable, float64 -> float32."""
    z = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def model_label(package: ModelPackage) -> str:
    """The ``model`` field of a record: the bundled name, else the package path."""
    if package.path is not None and Path(package.path).resolve().parent == BUNDLED_DIR.resolve():
        return package.name
    return str(package.path) if package.path is not None else package.name


def base_record(decoded: DecodedInput, image: DecodedImage | None, model: str | None,
                model_version: str | None) -> dict[str, Any]:
    """A record with every field of the contract, predictions still ``None``."""
    return {
        "path": decoded.path,
        "frame": image.frame if image else None,
        "sop_instance_uid": image.sop_instance_uid if image else None,
        "series_instance_uid": image.series_instance_uid if image else None,
        "model": model, "model_version": model_version,
        "predictions": None, "abstained": None, "body_part": None, "error": decoded.error,
    }


class TorchBackend:
    """Eager PyTorch: channels-last, inference mode."""

    name = "torch"

    def __init__(self, package: ModelPackage, threads: int | None = None):
        import torch

        if threads:
            torch.set_num_threads(threads)
        self._torch = torch
        self.model = package.build().to(memory_format=torch.channels_last)

    def _tensor(self, x: np.ndarray):
        return self._torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).contiguous(
            memory_format=self._torch.channels_last)

    def logits(self, x: np.ndarray) -> np.ndarray:
        with self._torch.inference_mode():
            return self.model(self._tensor(x)).float().numpy()

    def features(self, x: np.ndarray) -> np.ndarray:
        with self._torch.inference_mode():
            feats = self.model.forward_head(self.model.forward_features(self._tensor(x)),
                                            pre_logits=True)
            return feats.float().reshape(len(x), -1).numpy()


class Predictor:
    """A model ready to classify images; build one with :func:`load_model`.

    Attributes: ``package`` (the :class:`ModelPackage`), ``name`` (the record's ``model``),
    ``version`` (hash of the weights), ``backend`` (``torch`` or ``onnx``), ``thresholds``
    (per-task abstention thresholds in effect).
    """

    def __init__(self, package: ModelPackage, backend: str = "torch", *,
                 threshold: float | None = None, threads: int | None = None,
                 onnx_path: str | Path | None = None, name: str | None = None,
                 version: str | None = None):
        from radroute.data.preprocess import Preprocessing

        if backend not in BACKENDS:
            raise InvalidConfigError(f"unknown backend {backend!r}; use one of {', '.join(BACKENDS)}")
        self.package = package
        self.preprocessing = Preprocessing.from_dict(package.preprocessing)
        self.name = name or model_label(package)
        self.version = version or package.version
        self.backend = backend
        self.thresholds = {task: float(threshold if threshold is not None
                                       else package.thresholds.get(task, 0.0))
                           for task in package.tasks}
        if backend == "torch":
            self._runner = TorchBackend(package, threads)
        else:
            from radroute.inference.onnx import OnnxBackend, cached_onnx

            self._runner = OnnxBackend(onnx_path or cached_onnx(package), threads)

    def __repr__(self) -> str:
        return f"Predictor({self.name!r}, version={self.version!r}, backend={self.backend!r})"

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
    def record(self, decoded: DecodedInput, image: DecodedImage | None,
               probs: dict[str, np.ndarray] | None) -> dict[str, Any]:
        """The JSON record of one image (or of one failed input when ``image`` is None)."""
        rec = base_record(decoded, image, self.name, self.version)
        if probs is None:
            return rec
        predictions = {}
        for task, classes in self.package.tasks.items():
            p = probs[task]
            top = int(np.argmax(p))
            predictions[task] = {
                "label": classes[top], "score": round(float(p[top]), 6),
                "probabilities": {c: round(float(v), 6) for c, v in zip(classes, p)},
                "abstained": bool(p[top] < self.thresholds[task]),
            }
        rec["predictions"] = predictions
        rec["abstained"] = any(t["abstained"] for t in predictions.values())
        rec["body_part"] = self.body_part(predictions)
        return rec

    def body_part(self, predictions: dict[str, dict]) -> str | None:
        """The body-part term of the first task that maps its (non-abstained) label, else None."""
        for task, mapping in self.package.body_part_map.items():
            pred = predictions.get(task)
            if pred and not pred["abstained"] and pred["label"] in mapping:
                return mapping[pred["label"]]
        return None

    def run_decoded(self, decoded: list[DecodedInput], batch_size: int = 32) -> list[list[dict]]:
        """Classify already-decoded inputs: per input, its records (one per image, or one
        error record)."""
        images = [im for d in decoded if d.error is None for im in d.images]
        probs_all: list[dict[str, np.ndarray]] = []
        for start in range(0, len(images), batch_size):
            chunk = images[start:start + batch_size]
            probs = self.predict_arrays(np.stack([im.array for im in chunk]))
            probs_all += [{t: p[i] for t, p in probs.items()} for i in range(len(chunk))]
        it = iter(probs_all)
        out = []
        for d in decoded:
            if d.error is not None or not d.images:
                out.append([self.record(d, None, None)])
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
            return DecodedInput(meta.path, self.name, [DecodedImage(
                self.preprocessing.from_image(item), item.frame,
                meta.sop_instance_uid, meta.series_instance_uid)])
        arr = np.asarray(item, dtype=np.float32)
        if arr.ndim == 2:
            arr = self.preprocessing.from_array(arr)
        elif arr.ndim != 3:
            raise InvalidConfigError(f"expected a (H, W) or (C, S, S) array, got shape {arr.shape}")
        return DecodedInput(None, self.name, [DecodedImage(arr)])

    def iter_predict(self, inputs: Iterable[Any], *, batch_size: int = 32, workers: int = 0,
                     frames: str | int = "all") -> Iterator[dict]:
        """Lazily classify ``inputs`` in order, yielding one record per image.

        Paths are read by ``workers`` processes (0: in this process); ``frames`` is ``"all"``
        or one frame / slice index.
        """
        plans = {self.name: self.package.preprocessing}
        items = iter(inputs)
        queue: list[DecodedInput] = []

        def paths_until_other(first: Any) -> Iterator:
            yield first
            # stop at the first non-path so that Image/array inputs keep their place in the order
            for item in items:
                if not isinstance(item, (str, Path)):
                    stash.append(item)
                    return
                yield item

        stash: list[Any] = []
        while True:
            item = stash.pop() if stash else next(items, _END)
            if item is _END:
                break
            if isinstance(item, (str, Path)):
                stream = decode_paths(paths_until_other(item), plans, frames=frames, workers=workers)
            else:
                stream = iter([self.decode_inline(item)])
            for decoded in stream:
                queue.append(decoded)
                if len(queue) >= batch_size or sum(len(d.images) for d in queue) >= batch_size:
                    for records in self.run_decoded(queue, batch_size):
                        yield from records
                    queue = []
        for records in self.run_decoded(queue, batch_size):
            yield from records

    def predict(self, inputs: Any, batch_size: int = 32, workers: int = 0,
                frames: str | int = "all") -> list[dict]:
        """Classify paths, :class:`Image` objects or arrays (or one of them); one record per image."""
        if isinstance(inputs, (str, Path, np.ndarray)) or not isinstance(inputs, Iterable):
            inputs = [inputs]
        return list(self.iter_predict(inputs, batch_size=batch_size, workers=workers, frames=frames))


_END = object()


def load_model(name_or_path: str | Path, backend: str = "torch", *, threshold: float | None = None,
               threads: int | None = None) -> Predictor:
    """A :class:`Predictor` for a bundled model name, a package directory or an exported ``.onnx``.

    ``backend``: ``"torch"``; ``"onnx"`` runs ONNX Runtime on the package's exported graph
    (``model.onnx`` beside the weights, else exported once and cached); ``"auto"`` is ``onnx``
    when the package ships a ``model.onnx`` (the bundled ones do), else ``torch``. A ``.onnx``
    path always uses ONNX Runtime and reads its package from the file's metadata.
    ``threshold`` overrides every task's calibrated abstention threshold.
    """
    if str(name_or_path).endswith(".onnx"):
        from radroute.inference.onnx import package_from_onnx

        package, meta = package_from_onnx(name_or_path)
        return Predictor(package, "onnx", threshold=threshold, threads=threads,
                         onnx_path=name_or_path, name=meta["model"], version=meta["model_version"])
    package = ModelPackage.load(name_or_path)
    if backend == "auto":
        backend = "onnx" if (package.path / ONNX_BESIDE).is_file() else "torch"
    return Predictor(package, backend, threshold=threshold, threads=threads)
