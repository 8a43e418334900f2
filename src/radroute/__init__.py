"""radroute: recognise the anatomy in medical images and route each image where it belongs.

Data flows through the sub-packages in this order::

    io -> data -> models -> inference -> evaluation -> training -> routing -> web -> cli
"""
from __future__ import annotations

__version__ = "0.1.0"

from radroute.errors import RadrouteError  # noqa: E402
from radroute.vocab import BODY_PARTS  # noqa: E402


def load_model(name_or_path: str = "auto", **kwargs):
    """A predictor for a bundled model name, a package folder, an ``.onnx`` file or ``"auto"``
    (see :func:`radroute.inference.load_model`)."""
    from radroute.inference import load_model as _load

    return _load(name_or_path, **kwargs)


__all__ = ["BODY_PARTS", "RadrouteError", "load_model", "__version__"]
