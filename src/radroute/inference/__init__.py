"""Classify images with a model package: :func:`load_model` -> :class:`Predictor`.

>>> from radroute.inference import load_model
>>> predictor = load_model("chest-view")            # or a package directory, or a .onnx file
>>> predictor.predict(["a.dcm", "b.png"])           # one JSON-ready record per image
"""
from radroute.inference.predictor import BACKENDS, Predictor, load_model

__all__ = ["BACKENDS", "Predictor", "export_onnx", "load_model"]


def export_onnx(*args, **kwargs):
    """See :func:`radroute.inference.onnx.export_onnx` (imported lazily: it needs onnx)."""
    from radroute.inference.onnx import export_onnx as _export

    return _export(*args, **kwargs)
