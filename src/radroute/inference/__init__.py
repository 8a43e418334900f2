"""Classify images with model packages: :func:`load_model` -> a predictor -> :class:`Prediction` records.

>>> from radroute.inference import load_model
>>> predictor = load_model("chest-view")            # or a package directory, or a .onnx file
>>> predictor.predict(["a.dcm", "b.png"])           # one Prediction per image (.to_dict(): JSON)
>>> load_model("auto").predict(["a.dcm"])           # the bundled model chosen per image

The data path: read (``radroute.io``) -> decide the model (:mod:`.policy`) -> preprocess
(``radroute.data.Preprocessing``) -> predict (:mod:`.backends`) -> record (:mod:`.record`).
"""
from __future__ import annotations

from pathlib import Path

from radroute.inference.auto import AutoPredictor
from radroute.inference.backends import BACKENDS
from radroute.inference.policy import ModelPolicy
from radroute.inference.predictor import BatchClassifier, Predictor, load_predictor
from radroute.inference.record import Prediction, TaskPrediction

__all__ = ["AutoPredictor", "BACKENDS", "BatchClassifier", "ModelPolicy", "Prediction", "Predictor",
           "TaskPrediction", "export_onnx", "load_model", "load_predictor"]


def load_model(name_or_path: str | Path = "auto", backend: str = "torch", *,
               threshold: float | None = None, threads: int | None = None) -> Predictor | AutoPredictor:
    """A predictor for a bundled model name, a package directory, an exported ``.onnx``, or
    ``"auto"``: the bundled models, each image going to the one :class:`ModelPolicy` picks
    (models load lazily, when the first image that needs them arrives).

    ``backend``: ``"torch"``; ``"onnx"`` runs ONNX Runtime on the package's exported graph
    (``model.onnx`` beside the weights, else exported once and cached); ``"auto"`` is ``onnx``
    when the package ships a ``model.onnx`` (the bundled ones do), else ``torch``. A ``.onnx``
    path always uses ONNX Runtime and reads its package from the file's metadata.
    ``threshold`` overrides every task's calibrated abstention threshold; ``threads`` sets ONNX
    Runtime's intra-op threads (torch's are the application's: ``torch.set_num_threads``).
    """
    if str(name_or_path) == "auto":
        return AutoPredictor(backend=backend, threshold=threshold, threads=threads)
    return load_predictor(name_or_path, backend, threshold=threshold, threads=threads)


def export_onnx(*args, **kwargs):
    """See :func:`radroute.inference.onnx.export_onnx` (imported lazily: it needs onnx)."""
    from radroute.inference.onnx import export_onnx as _export

    return _export(*args, **kwargs)
