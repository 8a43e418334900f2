"""Run a model over a labelled dataset: align labels with the model's classes, collect outputs.

This module stays below ``radroute.inference`` in the layer order: it takes any object with
the :class:`~radroute.inference.Predictor` methods ``predict_arrays(x) -> {task: probs}`` and
``features(x) -> (N, D)`` plus a ``preprocessing`` attribute, and a
:class:`~radroute.data.cache.PreprocessedCache` (images decoded once at model resolution).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from radroute.evaluation.report import TaskPredictions

#: t-SNE / silhouette use at most this many images (the rest would cost time and show nothing new)
DEFAULT_FEATURE_POINTS = 1000


@dataclass
class LabelAlignment:
    """Per model task: the dataset task it is read from, and labels as model class indices."""

    labels: dict[str, np.ndarray]                 # task -> (N,) model class index, -1 = missing
    source_task: dict[str, str | None]            # model task -> dataset task (None: no labels)
    unknown_classes: dict[str, dict[str, int]] = field(default_factory=dict)  # dataset classes the model lacks

    def to_dict(self) -> dict[str, Any]:
        return {"source_task": self.source_task, "unknown_classes": self.unknown_classes,
                "labelled": {t: int((y >= 0).sum()) for t, y in self.labels.items()}}


def align_labels(dataset_tasks: dict[str, Sequence[str]], y: np.ndarray,
                 model_tasks: dict[str, Sequence[str]]) -> LabelAlignment:
    """Map a dataset's label matrix ``y`` (N, n_dataset_tasks; -1 missing) onto the model's tasks.

    A model task reads the dataset task of the same name; when both have a single task they
    are paired whatever their names (a folder-per-class source calls its task ``label``).
    Class names match exactly, else case-insensitively; dataset classes the model does not
    know become missing labels and are counted in ``unknown_classes``.
    """
    y = np.asarray(y).reshape(len(y), -1)
    names = list(dataset_tasks)
    labels: dict[str, np.ndarray] = {}
    source: dict[str, str | None] = {}
    unknown: dict[str, dict[str, int]] = {}
    for task, classes in model_tasks.items():
        src = task if task in dataset_tasks else (names[0] if len(names) == 1 and len(model_tasks) == 1 else None)
        source[task] = src
        if src is None:
            labels[task] = np.full(len(y), -1, np.int64)
            continue
        exact = {c: i for i, c in enumerate(classes)}
        folded = {str(c).casefold(): i for i, c in enumerate(classes)}
        lookup = np.array([exact.get(c, folded.get(str(c).casefold(), -1)) for c in dataset_tasks[src]] + [-1],
                          np.int64)
        col = y[:, names.index(src)]
        mapped = lookup[col]  # col == -1 picks the trailing -1
        labels[task] = mapped
        lost = (col >= 0) & (mapped < 0)
        if lost.any():
            cls = list(dataset_tasks[src])
            values, counts = np.unique(col[lost], return_counts=True)
            unknown[task] = {cls[v]: int(c) for v, c in zip(values, counts)}
    return LabelAlignment(labels, source, unknown)


def predict_cached(predictor: Any, images01: np.ndarray, indices: Sequence[int], batch_size: int = 64,
                   feature_rows: Sequence[int] | None = None,
                   progress: Callable[[int], None] | None = None) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """Probabilities for ``images01[indices]`` ((N, S, S) in [0, 1] or uint8, e.g. a cache's
    ``images``) and penultimate features for the positions ``feature_rows`` (into ``indices``).

    Returns ``({task: (len(indices), K)}, features (len(feature_rows), D) or None)``.
    """
    pre = predictor.preprocessing
    indices = np.asarray(indices, np.int64)
    want = np.zeros(len(indices), bool)
    if feature_rows is not None:
        want[np.asarray(feature_rows, np.int64)] = True
    probs: dict[str, list[np.ndarray]] = {}
    feats: list[np.ndarray] = []
    for start in range(0, len(indices), batch_size):
        chunk = indices[start:start + batch_size]
        x = pre.normalise(np.asarray(images01[chunk]))[:, None]
        for task, p in predictor.predict_arrays(x).items():
            probs.setdefault(task, []).append(p)
        sel = want[start:start + batch_size]
        if sel.any():
            feats.append(predictor.features(x[sel]))
        if progress:
            progress(len(chunk))
    out = {t: np.concatenate(v) for t, v in probs.items()}
    if not out:
        out = {t: np.zeros((0, len(c)), np.float32) for t, c in predictor.package.tasks.items()}
    return out, (np.concatenate(feats) if feats else None)


def feature_subset(n: int, max_points: int = DEFAULT_FEATURE_POINTS, seed: int = 0) -> np.ndarray:
    """Sorted positions of at most ``max_points`` of ``n`` rows, seeded."""
    rng = np.random.default_rng(seed)
    return np.sort(rng.permutation(n)[:max_points])


def task_predictions(model_tasks: dict[str, Sequence[str]], alignment: LabelAlignment,
                     probs: dict[str, np.ndarray], features: np.ndarray | None = None,
                     feature_rows: np.ndarray | None = None) -> dict[str, TaskPredictions]:
    """One :class:`TaskPredictions` per model task with labels, keeping only labelled rows."""
    out: dict[str, TaskPredictions] = {}
    for task, classes in model_tasks.items():
        y = alignment.labels[task]
        keep = y >= 0
        f, fy = None, None
        if features is not None and feature_rows is not None:
            rows_kept = keep[feature_rows]
            f, fy = features[rows_kept], y[feature_rows][rows_kept]
        out[task] = TaskPredictions(y[keep], probs[task][keep], list(classes), f, fy)
    return out
