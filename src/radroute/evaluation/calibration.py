"""Calibration: expected calibration error (ECE), reliability-diagram data, Brier score, NLL.

ECE follows Guo et al. 2017 ("On Calibration of Modern Neural Networks"): the top softmax
score of each prediction is binned into ``n_bins`` equal-width bins on [0, 1], and ECE is the
sample-weighted mean of |accuracy - mean confidence| over the bins.
"""
from __future__ import annotations

import numpy as np

DEFAULT_BINS = 15


def reliability_bins(y_true: np.ndarray, probs: np.ndarray, n_bins: int = DEFAULT_BINS) -> list[dict]:
    """Per-bin ``{low, high, count, confidence, accuracy}`` of the top-class score.

    ``confidence`` and ``accuracy`` are ``None`` for empty bins.
    """
    y_true = np.asarray(y_true)
    probs = np.asarray(probs, dtype=np.float64)
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == y_true
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    # bins are (low, high]; a score of exactly 0 goes into the first bin
    which = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, n_bins - 1)
    bins = []
    for b in range(n_bins):
        mask = which == b
        count = int(mask.sum())
        bins.append({
            "low": float(edges[b]), "high": float(edges[b + 1]), "count": count,
            "confidence": float(confidence[mask].mean()) if count else None,
            "accuracy": float(correct[mask].mean()) if count else None,
        })
    return bins


def expected_calibration_error(y_true: np.ndarray, probs: np.ndarray, n_bins: int = DEFAULT_BINS) -> float | None:
    """ECE of the top-class score (0 = perfectly calibrated); ``None`` for no samples."""
    bins = reliability_bins(y_true, probs, n_bins)
    n = sum(b["count"] for b in bins)
    if n == 0:
        return None
    return float(sum(b["count"] * abs(b["accuracy"] - b["confidence"]) for b in bins if b["count"]) / n)


def brier_score(y_true: np.ndarray, probs: np.ndarray) -> float | None:
    """Multi-class Brier score: mean over samples of sum_k (p_k - 1[y = k])^2."""
    probs = np.asarray(probs, dtype=np.float64)
    if len(probs) == 0:
        return None
    onehot = np.eye(probs.shape[1])[np.asarray(y_true)]
    return float(((probs - onehot) ** 2).sum(axis=1).mean())


def negative_log_likelihood(y_true: np.ndarray, probs: np.ndarray, eps: float = 1e-12) -> float | None:
    """Mean negative log probability of the true class (log loss)."""
    probs = np.asarray(probs, dtype=np.float64)
    if len(probs) == 0:
        return None
    p_true = probs[np.arange(len(probs)), np.asarray(y_true)]
    return float(-np.log(np.clip(p_true, eps, 1.0)).mean())


def calibration_summary(y_true: np.ndarray, probs: np.ndarray, n_bins: int = DEFAULT_BINS) -> dict:
    """``{ece, n_bins, brier, nll, bins}`` for metrics.json."""
    return {
        "ece": expected_calibration_error(y_true, probs, n_bins),
        "n_bins": n_bins,
        "brier": brier_score(y_true, probs),
        "nll": negative_log_likelihood(y_true, probs),
        "bins": reliability_bins(y_true, probs, n_bins),
    }
