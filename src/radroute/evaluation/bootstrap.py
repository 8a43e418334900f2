"""Bootstrap confidence intervals for confusion-matrix statistics.

Resampling ``n`` predictions with replacement only changes how many of them fall into each
cell of the confusion matrix, and those cell counts follow a multinomial distribution with
the observed cell frequencies. Drawing ``rng.multinomial(n, cm / n, size=B)`` is therefore the
exact ordinary (non-parametric) bootstrap of any statistic computed from the confusion matrix
(precision, recall, F1, accuracy), in O(B * K^2) instead of O(B * n): 10,000 resamples of any
number of predictions take milliseconds.
"""
from __future__ import annotations

import numpy as np

DEFAULT_RESAMPLES = 10_000


def resample_confusion(cm: np.ndarray, n_resamples: int = DEFAULT_RESAMPLES,
                       seed: int | None = 0) -> np.ndarray:
    """Bootstrap replicates of a (K, K) confusion matrix -> (n_resamples, K, K) int64."""
    cm = np.asarray(cm, dtype=np.int64)
    n = int(cm.sum())
    k = cm.shape[0]
    if n == 0:
        return np.zeros((n_resamples, k, k), dtype=np.int64)
    rng = np.random.default_rng(seed)
    draws = rng.multinomial(n, cm.ravel() / n, size=n_resamples)
    return draws.reshape(n_resamples, k, k)


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den with 0 where den == 0 (scikit-learn's ``zero_division=0``)."""
    num = np.asarray(num, dtype=np.float64)
    den = np.asarray(den, dtype=np.float64)
    return np.divide(num, den, out=np.zeros(np.broadcast(num, den).shape), where=den > 0)


def prf_from_confusion(cms: np.ndarray, labels: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Precision, recall and F1 from confusion matrices (rows = true, columns = predicted).

    ``cms`` is (K, K) or (B, K, K). Per-class arrays have shape (..., K). ``labels`` (a boolean
    mask or index array over classes) selects the classes that enter the macro and weighted
    averages, like scikit-learn's ``labels=`` argument; by default all K. Undefined ratios are
    0, as with scikit-learn's ``zero_division=0``.
    """
    cms = np.asarray(cms, dtype=np.float64)
    tp = np.diagonal(cms, axis1=-2, axis2=-1)
    support = cms.sum(axis=-1)       # true count per class
    predicted = cms.sum(axis=-2)     # predicted count per class
    precision = _safe_div(tp, predicted)
    recall = _safe_div(tp, support)
    f1 = _safe_div(2 * tp, support + predicted)
    k = cms.shape[-1]
    idx = np.arange(k) if labels is None else np.arange(k)[np.asarray(labels)]
    out = {"precision": precision, "recall": recall, "f1": f1}
    sel_support = support[..., idx]
    total = sel_support.sum(axis=-1)
    for name in ("precision", "recall", "f1"):
        values = out[name][..., idx]
        out[f"macro_{name}"] = values.mean(axis=-1) if len(idx) else np.full(values.shape[:-1], np.nan)
        out[f"weighted_{name}"] = _safe_div((values * sel_support).sum(axis=-1), total)
    out["accuracy"] = _safe_div(tp.sum(axis=-1), cms.sum(axis=(-2, -1)))
    return out


def percentile_ci(replicates: np.ndarray, confidence: float = 0.95) -> tuple[np.ndarray, np.ndarray]:
    """The percentile bootstrap interval along axis 0 -> (low, high)."""
    alpha = (1 - confidence) / 2
    low, high = np.quantile(replicates, [alpha, 1 - alpha], axis=0)
    return low, high


def bootstrap_prf(cm: np.ndarray, labels: np.ndarray | None = None,
                  n_resamples: int = DEFAULT_RESAMPLES, seed: int | None = 0,
                  confidence: float = 0.95) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Percentile bootstrap CIs of every statistic of :func:`prf_from_confusion`."""
    reps = prf_from_confusion(resample_confusion(cm, n_resamples, seed), labels)
    return {name: percentile_ci(values, confidence) for name, values in reps.items()}
