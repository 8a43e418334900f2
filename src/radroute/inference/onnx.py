"""ONNX export of a model package and the ONNX Runtime backend.

The exported graph takes ``image`` (N, C, S, S) float32, already through the package's
:class:`Preprocessing`, and returns ``logits`` (N, sum of classes). Its ``metadata_props`` carry
the whole package config (``radroute_config``: tasks, class names, preprocessing, thresholds),
``model`` and ``model_version``, so the ``.onnx`` file alone is enough to classify.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import numpy as np

from radroute.errors import InvalidConfigError, ModelNotFoundError
from radroute.inference.backends import OnnxBackend, softmax
from radroute.models.package import ModelPackage

#: largest allowed difference ONNX Runtime vs PyTorch in the export check (see export_difference)
EXPORT_TOLERANCE = 1e-4
OPSET = 18
ONNX_BESIDE = "model.onnx"  # a package may ship its exported graph under this name


def cache_dir() -> Path:
    """Where exported graphs of packages are cached: ``$RADROUTE_CACHE`` or ``~/.cache/radroute``."""
    root = os.environ.get("RADROUTE_CACHE") or Path.home() / ".cache" / "radroute"
    return Path(root) / "onnx"


def export_onnx(package: ModelPackage, out: str | Path, *, check: bool = True,
                opset: int = OPSET) -> Path:
    """Export ``package`` to ``out`` with a dynamic batch axis and check it against PyTorch.

    Raises :class:`InvalidConfigError` when ONNX Runtime and PyTorch disagree by more than
    :data:`EXPORT_TOLERANCE` on a random batch.
    """
    import onnx
    import torch

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    model = package.build()
    size = int(package.preprocessing.get("size", 224))
    example = torch.randn(2, package.in_chans, size, size)
    batch = torch.export.Dim("batch", min=1, max=4096)
    with torch.inference_mode(False), tempfile.TemporaryDirectory() as tmp:
        program = torch.onnx.export(
            model, (example,), dynamo=True, external_data=False, opset_version=opset,
            input_names=["image"], output_names=["logits"],
            dynamic_shapes=({0: batch},), artifacts_dir=tmp, verbose=False)
    proto = program.model_proto
    meta = {
        "radroute_config": json.dumps(package.to_config()),
        "model": package.label,
        "model_version": package.version,
        "tasks": json.dumps(package.tasks),
        "preprocessing": json.dumps(package.preprocessing),
    }
    del proto.metadata_props[:]
    for key, value in meta.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    tmp_out = out.with_name(out.name + ".tmp")
    onnx.save(proto, str(tmp_out))
    if check:
        x = np.random.default_rng(0).normal(size=(3, package.in_chans, size, size)).astype(np.float32)
        with torch.inference_mode():
            expected = model(torch.from_numpy(x)).numpy()
        got = OnnxBackend(tmp_out, threads=1).logits(x)
        diff = export_difference(package, expected, got)
        if not diff <= EXPORT_TOLERANCE:
            tmp_out.unlink(missing_ok=True)
            raise InvalidConfigError(f"ONNX output differs from PyTorch by {diff:.2e}", out)
    tmp_out.replace(out)
    return out


def export_difference(package: ModelPackage, expected: np.ndarray, got: np.ndarray) -> float:
    """The export check's measure: the largest difference of the per-task probabilities, or of
    the logits relative to their scale (float32 kernels differ in the last bits, and a trained
    network's logits reach tens), whichever is larger."""
    scale = max(1.0, float(np.abs(expected).max()))
    diff = float(np.abs(expected - got).max()) / scale
    for a, b in zip(package.split_logits(expected).values(), package.split_logits(got).values()):
        diff = max(diff, float(np.abs(softmax(a) - softmax(b)).max()))
    return diff


def cached_onnx(package: ModelPackage) -> Path:
    """The package's exported graph: ``model.onnx`` beside its weights, else exported once to
    :func:`cache_dir` under the weights hash."""
    beside = package.path / ONNX_BESIDE if package.path is not None else None
    if beside is not None and beside.is_file() and _onnx_version(beside) == package.version:
        return beside
    target = cache_dir() / f"{package.name}-{package.version}.onnx"
    if not target.is_file():
        export_onnx(package, target)
    return target


def _onnx_version(path: Path) -> str | None:
    import onnx

    meta = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    return meta.get("model_version")


def package_from_onnx(path: str | Path) -> tuple[ModelPackage, dict[str, str]]:
    """The :class:`ModelPackage` (no weights path) and metadata stored in an exported ``.onnx``."""
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise ModelNotFoundError(f"no ONNX file at {path}", path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    meta = session.get_modelmeta().custom_metadata_map
    if "radroute_config" not in meta:
        raise InvalidConfigError("the ONNX file has no radroute metadata; export it with "
                                 "`radroute export`", path)
    cfg = json.loads(meta["radroute_config"])
    known = set(ModelPackage.__dataclass_fields__) - {"path"}
    return ModelPackage(**{k: v for k, v in cfg.items() if k in known}), dict(meta)


__all__ = ["EXPORT_TOLERANCE", "ONNX_BESIDE", "OnnxBackend", "cache_dir", "cached_onnx", "export_onnx",
           "package_from_onnx"]
