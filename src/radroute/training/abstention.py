"""Abstention thresholds on the top softmax score, calibrated on validation.

For each task, the threshold is the lowest top score ``t`` such that the validation images
with top score ``>= t`` are classified with accuracy ``>= target`` (default 0.99): images
below ``t`` are sent to a person instead of routed. It is 0 (never abstain) when the whole
validation set already meets the target. The choice is noisy on small validation sets; the
model package stores it with the number of validation images it came from.
"""
from __future__ import annotations

import numpy as np

DEFAULT_TARGET = 0.99


def abstention_threshold(probs: np.ndarray, y_true: np.ndarray, target: float = DEFAULT_TARGET) -> dict:
    """``{"threshold", "target", "coverage", "accuracy_accepted", "n"}`` for one task."""
    y_true = np.asarray(y_true).ravel()
    n = len(y_true)
    if n == 0:
        return {"threshold": 0.0, "target": target, "coverage": None, "accuracy_accepted": None, "n": 0}
    top = probs.max(1)
    correct = probs.argmax(1) == y_true
    order = np.argsort(-top, kind="stable")
    cum_acc = np.cumsum(correct[order]) / np.arange(1, n + 1)
    ok = np.nonzero(cum_acc >= target)[0]
    if len(ok) and ok[-1] == n - 1:
        threshold = 0.0
    elif len(ok):
        threshold = float(top[order][ok[-1]])
    else:
        threshold = 1.0
    accepted = top >= threshold
    return {"threshold": threshold, "target": target, "coverage": float(accepted.mean()),
            "accuracy_accepted": float(correct[accepted].mean()) if accepted.any() else None, "n": n}
