"""Classification metrics with confidence intervals, as the published systems report them.

* accuracy / error with an exact Clopper-Pearson 95 % interval (Rajkomar 2016: 1377/1377
  correct -> 99.73-100 %);
* per-class, macro and weighted precision, recall, F1 with bootstrap 95 % intervals;
* one-vs-rest ROC AUC per class and their mean, ROC curves (Rajkomar 2016, Roth 2015);
* the confusion matrix (all four systems);
* for two classes, the Youden-index cutoff with sensitivity and specificity there (Rajkomar);
* calibration (ECE, reliability bins, Brier, NLL).

:func:`evaluate_predictions` bundles everything into one JSON-serialisable dict, with
``None`` wherever a number is undefined (e.g. the AUC of a class absent from ``y_true``).
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
from scipy.stats import binomtest
from sklearn.metrics import confusion_matrix, roc_auc_score, roc_curve

from radroute.errors import InvalidConfigError
from radroute.evaluation.bootstrap import DEFAULT_RESAMPLES, bootstrap_prf, prf_from_confusion
from radroute.evaluation.calibration import DEFAULT_BINS, calibration_summary

CONFIDENCE = 0.95
#: at most this many points go into the silhouette score of the features
MAX_FEATURE_POINTS = 2000


def clopper_pearson(k: int, n: int, confidence: float = CONFIDENCE) -> tuple[float | None, float | None]:
    """Exact (Clopper-Pearson) interval of a binomial proportion ``k / n``; ``(None, None)`` if n = 0."""
    if n <= 0:
        return None, None
    ci = binomtest(int(k), int(n)).proportion_ci(confidence_level=confidence, method="exact")
    return float(ci.low), float(ci.high)


def proportion(k: int, n: int, confidence: float = CONFIDENCE) -> dict[str, Any]:
    """``{value, ci_low, ci_high, k, n, method}`` for a proportion with its exact interval."""
    low, high = clopper_pearson(k, n, confidence)
    return {"value": k / n if n else None, "ci_low": low, "ci_high": high,
            "k": int(k), "n": int(n), "method": "clopper-pearson"}


def accuracy_with_ci(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[dict, dict]:
    """(accuracy, error), each a :func:`proportion` dict."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    n = len(y_true)
    correct = int((y_true == y_pred).sum())
    return proportion(correct, n), proportion(n - correct, n)


def one_vs_rest_auc(y_true: np.ndarray, probs: np.ndarray) -> list[float | None]:
    """ROC AUC of class k vs the rest for each k; ``None`` if only one side is present."""
    y_true = np.asarray(y_true)
    out: list[float | None] = []
    for k in range(probs.shape[1]):
        positive = y_true == k
        if positive.all() or not positive.any():
            out.append(None)
        else:
            out.append(float(roc_auc_score(positive, probs[:, k])))
    return out


def roc_curves(y_true: np.ndarray, probs: np.ndarray, class_names: Sequence[str]) -> dict[str, dict | None]:
    """One-vs-rest ROC curve per class: ``{name: {fpr, tpr, thresholds}}`` (None if undefined)."""
    y_true = np.asarray(y_true)
    curves: dict[str, dict | None] = {}
    for k, name in enumerate(class_names):
        positive = y_true == k
        if positive.all() or not positive.any():
            curves[name] = None
            continue
        fpr, tpr, thr = roc_curve(positive, probs[:, k])
        curves[name] = {"fpr": fpr.tolist(), "tpr": tpr.tolist(),
                        "thresholds": np.minimum(thr, 1.0).tolist()}  # sklearn's first is +inf
    return curves


def youden_cutoff(y_true: np.ndarray, score: np.ndarray, positive: int = 1) -> dict[str, Any] | None:
    """The cutoff maximising Youden's J = sensitivity + specificity - 1 = TPR - FPR.

    ``score`` is the predicted probability of the positive class; a sample is called positive
    when ``score >= cutoff``. Returns ``{cutoff, youden_j, sensitivity, specificity}`` (with
    exact intervals for the two rates) or ``None`` when one class is absent.
    """
    y = np.asarray(y_true) == positive
    score = np.asarray(score, dtype=np.float64)
    if y.all() or not y.any():
        return None
    fpr, tpr, thr = roc_curve(y, score)
    best = int(np.argmax(tpr - fpr))
    cutoff = float(min(thr[best], 1.0))
    called = score >= cutoff
    tp, fn = int((called & y).sum()), int((~called & y).sum())
    tn, fp = int((~called & ~y).sum()), int((called & ~y).sum())
    return {
        "cutoff": cutoff,
        "youden_j": float(tpr[best] - fpr[best]),
        "sensitivity": proportion(tp, tp + fn),
        "specificity": proportion(tn, tn + fp),
        "counts": {"tp": tp, "fn": fn, "tn": tn, "fp": fp},
    }


def feature_separation(features: np.ndarray, y_true: np.ndarray, seed: int = 0) -> dict[str, Any]:
    """How well penultimate features separate the labels: dimension and silhouette score."""
    from sklearn.metrics import silhouette_score

    features = np.asarray(features, dtype=np.float64).reshape(len(features), -1)
    y_true = np.asarray(y_true)
    silhouette = None
    if 1 < len(np.unique(y_true)) < len(y_true):
        rng = np.random.default_rng(seed)
        keep = np.sort(rng.permutation(len(y_true))[:MAX_FEATURE_POINTS])
        if len(np.unique(y_true[keep])) > 1:
            silhouette = float(silhouette_score(features[keep], y_true[keep]))
    return {"dim": int(features.shape[1]), "n": int(len(features)), "silhouette": silhouette}


def _interval(value: float | None, low: float, high: float) -> dict[str, float | None]:
    if value is None:
        return {"value": None, "ci_low": None, "ci_high": None}
    return {"value": float(value), "ci_low": float(low), "ci_high": float(high)}


def _mean_or_none(values: Sequence[float | None], weights: Sequence[float] | None = None) -> float | None:
    pairs = [(v, 1.0 if weights is None else w) for v, w in zip(values, weights or [1.0] * len(values))
             if v is not None]
    total = sum(w for _, w in pairs)
    return float(sum(v * w for v, w in pairs) / total) if pairs and total > 0 else None


def to_jsonable(obj: Any) -> Any:
    """Numpy scalars/arrays -> Python; NaN and inf -> None, recursively."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def evaluate_predictions(y_true: np.ndarray, probs: np.ndarray, class_names: Sequence[str],
                         features: np.ndarray | None = None, seed: int = 0,
                         n_resamples: int = DEFAULT_RESAMPLES, n_bins: int = DEFAULT_BINS,
                         feature_labels: np.ndarray | None = None) -> dict[str, Any]:
    """Every metric for one task as a JSON-serialisable dict (``None`` where undefined).

    ``y_true`` holds class indices (N,), ``probs`` the predicted probabilities (N, K); the
    prediction is the arg-max. Macro and weighted averages run over the classes present in
    ``y_true`` or the predictions, as scikit-learn does by default; bootstrap intervals use
    ``n_resamples`` seeded resamples (percentile method). ``features`` (penultimate-layer,
    (M, D)) belong to ``y_true`` row by row, or to ``feature_labels`` when given (a subset).
    """
    y_true = np.asarray(y_true).astype(np.int64).ravel()
    probs = np.asarray(probs, dtype=np.float64)
    class_names = list(class_names)
    k = len(class_names)
    if probs.ndim != 2 or probs.shape != (len(y_true), k):
        raise InvalidConfigError(f"probs must be (N={len(y_true)}, K={k}), got {probs.shape}")
    if len(y_true) and (y_true.min() < 0 or y_true.max() >= k):
        raise InvalidConfigError("y_true holds class indices outside the class list")
    y_pred = probs.argmax(axis=1) if len(probs) else np.zeros(0, dtype=np.int64)

    cm = confusion_matrix(y_true, y_pred, labels=np.arange(k)) if len(y_true) else np.zeros((k, k), int)
    support, predicted = cm.sum(axis=1), cm.sum(axis=0)
    present = (support + predicted) > 0
    point = prf_from_confusion(cm, present)
    cis = bootstrap_prf(cm, present, n_resamples=n_resamples, seed=seed)

    accuracy, error = accuracy_with_ci(y_true, y_pred)
    aucs = one_vs_rest_auc(y_true, probs) if len(y_true) else [None] * k

    per_class: dict[str, Any] = {}
    for i, name in enumerate(class_names):
        defined = {"precision": predicted[i] > 0, "recall": support[i] > 0, "f1": present[i]}
        row: dict[str, Any] = {"support": int(support[i]), "predicted": int(predicted[i])}
        for stat in ("precision", "recall", "f1"):
            value = point[stat][i] if defined[stat] else None
            row[stat] = _interval(value, cis[stat][0][i], cis[stat][1][i])
        row["auc"] = aucs[i]
        per_class[name] = row

    def average(kind: str) -> dict[str, Any]:
        out = {}
        for stat in ("precision", "recall", "f1"):
            key = f"{kind}_{stat}"
            value = point[key] if present.any() else None
            out[stat] = _interval(value, cis[key][0], cis[key][1])
        return out

    macro, weighted = average("macro"), average("weighted")
    macro["auc"] = _mean_or_none(aucs)
    weighted["auc"] = _mean_or_none(aucs, [float(s) for s in support])

    result = {
        "n": int(len(y_true)),
        "classes": class_names,
        "accuracy": accuracy,
        "error": error,
        "per_class": per_class,
        "macro": macro,
        "weighted": weighted,
        "confusion_matrix": cm.tolist(),
        "roc": roc_curves(y_true, probs, class_names) if len(y_true) else {c: None for c in class_names},
        "youden": youden_cutoff(y_true, probs[:, 1]) if k == 2 and len(y_true) else None,
        "calibration": calibration_summary(y_true, probs, n_bins),
        "features": (feature_separation(features, y_true if feature_labels is None else feature_labels, seed)
                     if features is not None and len(features) else None),
        "bootstrap": {"n_resamples": int(n_resamples), "seed": seed, "confidence": CONFIDENCE,
                      "method": "percentile, multinomial resampling of the confusion matrix"},
    }
    if k == 2 and result["youden"] is not None:
        result["youden"]["positive_class"] = class_names[1]
    return to_jsonable(result)
