"""Validation metrics and thresholds for a model package, from logits and labels."""
from __future__ import annotations

from typing import Any

import numpy as np
from scipy.special import softmax

from radroute.training.calibration import DEFAULT_TARGET, abstention_threshold
from radroute.training.loss import IGNORE, task_slices

#: bulky parts of radroute.evaluation's output that a package does not need
_DROP = ("roc", "features")


def task_probabilities(logits: np.ndarray, tasks: dict[str, list[str]]) -> dict[str, np.ndarray]:
    sizes = [len(c) for c in tasks.values()]
    return {t: softmax(logits[:, sl].astype(np.float64), axis=1) for t, sl in zip(tasks, task_slices(sizes))}


def _basic_metrics(y: np.ndarray, probs: np.ndarray, classes: list[str]) -> dict[str, Any]:
    from sklearn.metrics import recall_score, roc_auc_score

    pred = probs.argmax(1)
    recall = recall_score(y, pred, labels=range(len(classes)), average=None, zero_division=np.nan)
    try:
        auc = float(roc_auc_score(y, probs, multi_class="ovr", labels=range(len(classes)))
                    if len(classes) > 2 else roc_auc_score(y, probs[:, 1]))
    except ValueError:
        auc = None
    return {"n": int(len(y)), "accuracy": {"value": float((pred == y).mean())},
            "per_class": {c: {"recall": {"value": None if np.isnan(r) else float(r)}} for c, r in zip(classes, recall)},
            "macro": {"auc": auc}}


def validation_summary(logits: np.ndarray, y: np.ndarray, tasks: dict[str, list[str]],
                       abstain_target: float = DEFAULT_TARGET, n_resamples: int = 1000,
                       ) -> tuple[dict[str, Any], dict[str, float]]:
    """``(metrics, thresholds)``: per task, radroute.evaluation's metrics (accuracy with CI,
    per-class recall/precision/F1, macro AUC, confusion matrix, calibration) and the abstention
    threshold of :mod:`radroute.training.calibration`."""
    try:
        from radroute.evaluation import evaluate_predictions
    except ImportError:  # evaluation not installed / broken: basic scikit-learn figures
        evaluate_predictions = None
    metrics: dict[str, Any] = {}
    thresholds: dict[str, float] = {}
    y = y.reshape(len(y), -1)
    for col, (task, probs) in enumerate(task_probabilities(logits, tasks).items()):
        mask = y[:, col] != IGNORE
        yt, pt = y[mask, col], probs[mask]
        if evaluate_predictions is not None:
            m = evaluate_predictions(yt, pt, tasks[task], n_resamples=n_resamples)
            m = {k: v for k, v in m.items() if k not in _DROP}
        else:
            m = _basic_metrics(yt, pt, tasks[task])
        abst = abstention_threshold(pt, yt, abstain_target)
        m["abstention"] = abst
        metrics[task] = m
        thresholds[task] = abst["threshold"]
    return metrics, thresholds
