"""Where the network runs: eager PyTorch or ONNX Runtime, behind one ``logits(x)`` call."""
from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from radroute.models.package import ModelPackage

BACKENDS = ("torch", "onnx")


class Backend(Protocol):
    """Preprocessed ``(N, C, S, S)`` float32 in, concatenated logits of every task out."""

    name: str

    def logits(self, x: np.ndarray) -> np.ndarray: ...


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, numerically stable, float64 -> float32."""
    z = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


class TorchBackend:
    """Eager PyTorch: channels-last, inference mode.

    It does not change torch's process-wide thread count: that is the application's choice
    (``radroute classify --threads`` sets it).
    """

    name = "torch"

    def __init__(self, package: ModelPackage):
        import torch

        self._torch = torch
        self.model = package.build().to(memory_format=torch.channels_last)

    def _tensor(self, x: np.ndarray):
        return self._torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).contiguous(
            memory_format=self._torch.channels_last)

    def logits(self, x: np.ndarray) -> np.ndarray:
        with self._torch.inference_mode():
            return self.model(self._tensor(x)).float().numpy()

    def features(self, x: np.ndarray) -> np.ndarray:
        """Penultimate features ``(N, D)``."""
        with self._torch.inference_mode():
            feats = self.model.forward_head(self.model.forward_features(self._tensor(x)),
                                            pre_logits=True)
            return feats.float().reshape(len(x), -1).numpy()


class OnnxBackend:
    """ONNX Runtime on the CPU, all graph optimisations on; ``threads`` intra-op threads."""

    name = "onnx"

    def __init__(self, path: str | Path, threads: int | None = None):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        self.path = Path(path)
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name

    def logits(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: np.ascontiguousarray(x, np.float32)})[0]
