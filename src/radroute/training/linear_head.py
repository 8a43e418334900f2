"""Frozen features + a scikit-learn linear classifier, folded into the network's last layer.

Menkovski et al. 2015 classified anatomy with a linear SVM on the penultimate features of a
network pretrained on another domain. Here the fitted ``LinearSVC`` / ``LogisticRegression``
(after a ``StandardScaler``) is folded into the model's classifier ``nn.Linear``:
``W' = T * W / sigma``, ``b' = T * (b - W' mu)``, with one temperature ``T`` per task fitted on
validation (minimum negative log-likelihood), so ``softmax(logits)`` gives calibrated
probabilities ("Platt-style" scaling of the SVM margins). The result is an ordinary model
package: every later step (evaluation, ONNX, the router) works unchanged.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax
from torch import nn

from radroute.errors import InvalidConfigError
from radroute.training.loss import IGNORE, task_slices

LINEAR_KINDS = ("svm", "logreg")
#: bias of a class never seen in training: it is never predicted
ABSENT_CLASS_BIAS = -1e4


def _fit_temperature(scores: np.ndarray, y: np.ndarray) -> float:
    if len(y) == 0:
        return 1.0

    def nll(log_t: float) -> float:
        return float(-log_softmax(scores * np.exp(log_t), axis=1)[np.arange(len(y)), y].mean())

    return float(np.exp(minimize_scalar(nll, bounds=(-6.0, 6.0), method="bounded").x))


def fit_linear_head(train_x: np.ndarray, train_y: np.ndarray, task_sizes: Sequence[int],
                    kind: str = "svm", val_x: np.ndarray | None = None, val_y: np.ndarray | None = None,
                    C: float = 1.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Fit one linear classifier per task; returns ``(W (sum K, D), b (sum K,), info)``.

    ``train_y``/``val_y`` are (N, n_tasks) class indices with -1 = missing. The temperature is
    fitted on the validation features when given, else on the training features.
    """
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    if kind not in LINEAR_KINDS:
        raise InvalidConfigError(f"linear head must be one of {LINEAR_KINDS}, got {kind!r}")
    train_y = train_y.reshape(len(train_y), -1)
    scaler = StandardScaler().fit(train_x)
    sigma = np.where(scaler.scale_ > 0, scaler.scale_, 1.0)
    xs = scaler.transform(train_x)
    d = train_x.shape[1]
    W = np.zeros((sum(task_sizes), d), np.float64)
    b = np.full(sum(task_sizes), ABSENT_CLASS_BIAS, np.float64)
    info: dict[str, Any] = {"kind": kind, "C": C, "temperature": []}
    for t, sl in enumerate(task_slices(task_sizes)):
        mask = train_y[:, t] != IGNORE
        classes = np.unique(train_y[mask, t])
        if len(classes) < 2:
            raise InvalidConfigError(f"task {t}: the training features cover fewer than 2 classes")
        clf = (LinearSVC(C=C, random_state=seed, max_iter=5000) if kind == "svm"
               else LogisticRegression(C=C, max_iter=3000))
        # one BLAS thread: multi-threaded OpenBLAS spins badly on a busy CPU for problems this size
        with threadpool_limits(1, user_api="blas"):
            clf.fit(xs[mask], train_y[mask, t])
        coef, icpt = clf.coef_, clf.intercept_
        if len(classes) == 2:  # one score s: logits (0, s) give softmax = sigmoid(s)
            coef = np.vstack([np.zeros_like(coef), coef])
            icpt = np.concatenate([[0.0], icpt])
        w = coef / sigma                     # fold the scaler into the weights
        bias = icpt - w @ scaler.mean_
        rows = sl.start + classes
        W[rows], b[rows] = w, bias
        if val_x is not None and val_y is not None:
            vmask = val_y.reshape(len(val_y), -1)[:, t] != IGNORE
            cx, cy = val_x[vmask], val_y.reshape(len(val_y), -1)[vmask, t]
        else:
            cx, cy = train_x[mask], train_y[mask, t]
        temp = _fit_temperature(cx @ W[sl].T + b[sl], cy)
        W[sl] *= temp
        b[sl] = np.where(b[sl] <= ABSENT_CLASS_BIAS, ABSENT_CLASS_BIAS, b[sl] * temp)
        info["temperature"].append(temp)
    return W.astype(np.float32), b.astype(np.float32), info


def set_classifier(model: nn.Module, W: np.ndarray, b: np.ndarray) -> None:
    """Replace the model's final ``nn.Linear`` (``get_classifier()``) by ``W x + b``."""
    head = model.get_classifier()
    if not (isinstance(head, nn.Linear) and head.weight.shape == W.shape):
        model.reset_classifier(W.shape[0])  # timm's API; radroute's models have it too
        head = model.get_classifier()
    if not (isinstance(head, nn.Linear) and head.weight.shape == W.shape):
        raise InvalidConfigError(f"{type(model).__name__}: the classifier is not a Linear on the "
                                 f"{W.shape[1]} penultimate features")
    with torch.no_grad():
        head.weight.copy_(torch.from_numpy(W))
        head.bias.copy_(torch.from_numpy(b))
