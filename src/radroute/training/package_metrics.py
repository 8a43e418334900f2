"""Validation metrics and thresholds for a model package, from logits and labels."""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np
from scipy.special import softmax

from radroute.evaluation import evaluate_predictions
from radroute.training.abstention import DEFAULT_TARGET, abstention_threshold
from radroute.training.loss import IGNORE, task_slices

#: bulky parts of radroute.evaluation's output that a package does not need
_DROP = ("roc", "features")

#: an abstention target for every task, or per task (tasks not named get :data:`DEFAULT_TARGET`)
AbstainTarget = float | Mapping[str, float]


def task_probabilities(logits: np.ndarray, tasks: dict[str, list[str]]) -> dict[str, np.ndarray]:
    sizes = [len(c) for c in tasks.values()]
    return {t: softmax(logits[:, sl].astype(np.float64), axis=1) for t, sl in zip(tasks, task_slices(sizes))}


def target_of(abstain_target: AbstainTarget, task: str) -> float:
    """The abstention target of ``task``."""
    if isinstance(abstain_target, Mapping):
        return float(abstain_target.get(task, DEFAULT_TARGET))
    return float(abstain_target)


def validation_summary(logits: np.ndarray, y: np.ndarray, tasks: dict[str, list[str]],
                       abstain_target: AbstainTarget = DEFAULT_TARGET, n_resamples: int = 1000,
                       ) -> tuple[dict[str, Any], dict[str, float]]:
    """``(metrics, thresholds)``: per task, radroute.evaluation's metrics (accuracy with CI,
    per-class recall/precision/F1, macro AUC, confusion matrix, calibration) and the abstention
    threshold of :mod:`radroute.training.abstention`."""
    metrics: dict[str, Any] = {}
    thresholds: dict[str, float] = {}
    y = y.reshape(len(y), -1)
    for col, (task, probs) in enumerate(task_probabilities(logits, tasks).items()):
        mask = y[:, col] != IGNORE
        yt, pt = y[mask, col], probs[mask]
        m = evaluate_predictions(yt, pt, tasks[task], n_resamples=n_resamples)
        m = {k: v for k, v in m.items() if k not in _DROP}
        abst = abstention_threshold(pt, yt, target_of(abstain_target, task))
        m["abstention"] = abst
        metrics[task] = m
        thresholds[task] = abst["threshold"]
    return metrics, thresholds
